"""Automatic restore after quorum loss (spec.recovery.autoRestore)."""

from etcdop.operator.autorestore.controller import controller

__all__ = ["controller"]
