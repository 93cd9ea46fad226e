"""Policy backends (ROS-free): ``make_backend(kind, **options)`` and the request/result types."""

from .base import (  # noqa: F401
    ACTION_MODES,
    BACKEND_KINDS,
    BackendError,
    BackendInfo,
    BackendUnavailable,
    CheckpointError,
    NonFiniteActions,
    PolicyBackend,
    PolicyRequest,
    PolicyResult,
    RTC_SCHEDULES,
    RtcInputs,
    TagInfo,
    action_space_of,
    make_backend,
)
