-- Daily adjusted closes of the strategy universe (the stocks). One row per (date, symbol); written one partition window at a time
-- (DELETE window + INSERT in one transaction) by the market_prices asset.
CREATE TABLE IF NOT EXISTS market_prices (
    date   DATE    NOT NULL,
    symbol VARCHAR NOT NULL,
    close  DOUBLE  NOT NULL CHECK (close > 0 AND isfinite(close)),
    PRIMARY KEY (date, symbol)
);

-- The benchmark index (S&P 500 in the bundled set), kept beside the universe, same partitions.
CREATE TABLE IF NOT EXISTS market_benchmark (
    date   DATE    NOT NULL PRIMARY KEY,
    name   VARCHAR NOT NULL,
    close  DOUBLE  NOT NULL CHECK (close > 0 AND isfinite(close))
);

-- Sector of each symbol (from sectors.csv when the source has one).
CREATE TABLE IF NOT EXISTS market_sectors (
    symbol VARCHAR NOT NULL PRIMARY KEY,
    sector VARCHAR NOT NULL
);

-- Indicators beside the prices (VIX, credit spreads, yields): regime inputs, never traded. One row per
-- (date, name) on NYSE sessions; value NaN where the source file had a missing token ('.', empty, null).
CREATE TABLE IF NOT EXISTS market_indicators (
    date   DATE    NOT NULL,
    name   VARCHAR NOT NULL,
    value  DOUBLE,
    PRIMARY KEY (date, name)
);
