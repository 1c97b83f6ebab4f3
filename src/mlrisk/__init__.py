"""mlrisk: a reproducible DVC pipeline for short-term crypto price-direction prediction.

All logic lives in this package; ``stages/`` holds one thin script per DVC stage.
Times are UTC everywhere; prices are float64 in quote currency; returns and rates are
fractions (0.01 = 1 %) unless a name says ``_pct`` or ``_bps``.
"""

__version__ = "0.1.0"
