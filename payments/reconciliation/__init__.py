"""Daily reconciliation: a provider's bill for a China-time day against the ledger for that day.

- :mod:`.runs`: a run's life (start, the stages finance watches, failure, totals, resolving items);
- :mod:`.bills`: parsing each provider's bill into one frame and checking it against its totals;
- :mod:`.ledger_day`: the ledger's side of the day;
- :mod:`.matching`: bill against ledger, the discrepancies and totals;
- :mod:`.export`: discrepancies as CSV or XLSX for finance.
"""
