-- Allocator layers. Wide tables: listed columns are the contract; feature and contribution
-- columns are added by the assets (CREATE TABLE from the first frame) and documented in the UI.

-- Carries of the incremental layers: the state after a date, so the next day costs O(1) days of work.
-- Kept for the last date of every run and for every month end (checkpoints for restatements).
CREATE TABLE IF NOT EXISTS layer_carry (
    asset       VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    date        DATE    NOT NULL,
    carry       VARCHAR NOT NULL,  -- JSON
    PRIMARY KEY (asset, config_hash, date)
);

-- Change log: each write of a layer appends (asset, version, changed_from, through); versions increase.
CREATE TABLE IF NOT EXISTS layer_changes (
    asset        VARCHAR   NOT NULL,
    version      BIGINT    NOT NULL,
    changed_from DATE,               -- NULL: the write changed nothing
    through      DATE,
    run_id       VARCHAR,
    written_at   TIMESTAMP,
    PRIMARY KEY (asset, version)
);

-- What each consumer has consumed of its upstream, and with which settings (hash).
CREATE TABLE IF NOT EXISTS layer_watermark (
    asset       VARCHAR NOT NULL PRIMARY KEY,
    upstream    VARCHAR NOT NULL,
    version     BIGINT  NOT NULL,
    config_hash VARCHAR NOT NULL
);
