"""What every command shares with MLflow: the contract of names (`contract`, import-free) and the
helpers that open and close runs (`runs`)."""
