"""Scoring predictions honestly: classification metrics, baselines fitted on train only, accuracy
by confidence and calibration, the verdict, and walk-forward retraining."""
