"""A small web service and page around an :class:`~emovox.inference.recognizer.EmotionRecognizer`.

Needs the ``serve`` extra: ``pip install 'emovox[serve]'`` (FastAPI, uvicorn,
python-multipart).

>>> from emovox.serve import serve
>>> serve("runs/tess/model", port=8000)    # doctest: +SKIP
"""
from __future__ import annotations

from ..errors import EmovoxError

try:
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the installation
    raise EmovoxError(
        f"the emovox web service needs FastAPI, uvicorn and python-multipart ({err}); "
        "install them with: pip install 'emovox[serve]'"
    ) from None

from .app import ServeConfig, create_app, serve  # noqa: E402

__all__ = ["ServeConfig", "create_app", "serve"]
