"""Candles in, model-ready tables out: kline schema and validation (:mod:`.klines`), sources
(:mod:`.sources`: the shipped sample, Binance, dump files), labels, the chronological split and the
preprocess transform. The shipped sample files (``*.csv.gz``) live in this folder."""
