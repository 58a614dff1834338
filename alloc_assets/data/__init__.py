"""The bundled data set (package data): 20 US stocks and the S&P 500, 1990-2022, with its licence."""
