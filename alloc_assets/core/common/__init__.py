"""Small helpers every domain uses: dates, markdown tables, PNG figures, atomic file writes."""
