"""Errors whose message is written for the person using the demo, shown as is."""

from hvl_core import CheckpointError, ImageError, ScoreError
from hvl_core.backbones import BackboneUnavailable, UnknownClassError


class UserError(Exception):
    """Something the person using the demo can fix; the message is shown as is."""


#: errors whose message is written for the person using the demo
USER_ERRORS = (UserError, ImageError, CheckpointError, BackboneUnavailable, UnknownClassError, ScoreError)
