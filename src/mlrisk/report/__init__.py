"""Charts (plotly figures) for evaluation and backtest, and the one HTML writer."""
