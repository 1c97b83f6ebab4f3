"""Errors that a user can fix. Stages print them as one line and exit non-zero."""

from __future__ import annotations


class MlriskError(Exception):
    """An error caused by input (params, data, exchange) that names the problem and the fix."""


class ParamsError(MlriskError):
    """params.yaml has an unknown key, a wrong type or an out-of-range value."""


class DataError(MlriskError):
    """A data file is missing, corrupt, gappy (under ``gap_policy: error``) or empty."""


class ExchangeError(MlriskError):
    """The exchange refused a request or could not be reached after retries."""


class SettingsError(MlriskError):
    """An environment variable, ``.env`` entry or command-line setting is missing or invalid."""
