"""The logs' own guard: a traceback is logged without the values its frames held."""

import logging

import pytest
import structlog

from clientvault.logging import configure, get_logger


def check(password: str) -> None:
    raise RuntimeError("the check failed")


def test_a_logged_traceback_has_no_frame_locals(capsys: pytest.CaptureFixture[str]) -> None:
    handlers, level = logging.root.handlers[:], logging.root.level
    configure("info", "test")
    try:
        try:
            check("hunter2-but-longer")
        except RuntimeError:
            get_logger(__name__).exception("check.failed")
    finally:
        structlog.reset_defaults()
        logging.root.handlers[:], logging.root.level = handlers, level

    logged = capsys.readouterr().err
    assert "the check failed" in logged
    assert '"name": "check"' in logged  # the frames are there…
    assert "hunter2-but-longer" not in logged  # …not what they held
