"""The integration tests' shared client code lives in tools/tg_http.py (tools/soak.py uses it too)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
