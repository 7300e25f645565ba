"""The cross-model accuracy table: a query over tracked evaluate runs, pivoted and written out."""
