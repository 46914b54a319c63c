"""Errors a user can act on. The CLI prints them as one paragraph, never as a traceback."""


class RtmbenchError(Exception):
    """Base of every error that is the user's input or environment, not a bug of ours."""

    exit_code = 2


class InputError(RtmbenchError):
    """A zoo, suite or results file that does not parse into its schema."""


class DatasetError(RtmbenchError):
    """A dataset (COCO annotations, images, detections) that is missing or does not parse."""
