"""GET /dashboard end to end: the real server on 127.0.0.1 with 4 groups and 500 configured users,
some load (500 users' requests, 429s from a full queue, 503s from a queue-wait bound), then the page
in headless Chromium (Debian's chromium and chromedriver, driven by Selenium) signed in through its
form with an admin key; every number the page shows must match /admin/qos, and a screenshot is
saved under the build tree. Also: the page is never served without credentials.

Run by ctest (tests/gateway/CMakeLists.txt) with TIERGATE_BINARY and DASHBOARD_SCREENSHOT set;
needs tools/python_env.sh's venv and the browser from `tools/bootstrap.sh browser`."""
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("TIERGATE_BINARY", ROOT / "build/release/gateway/tiergate"))
MODEL = ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
SCREENSHOT = Path(os.environ.get("DASHBOARD_SCREENSHOT", ROOT / "build/release/dashboard/dashboard.png"))
BULK_USERS = [f"bulk_{i:03d}" for i in range(500)]


def keys_add(state, *args):
    return subprocess.run([str(BINARY), "keys", "add", "--state-dir", str(state), *args], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    assert MODEL.exists(), f"model not found at {MODEL} (run tools/fetch_model.sh)"
    state = tmp_path_factory.mktemp("dashboard")
    config = json.loads((ROOT / "config/qos_config.json").read_text())
    config["user_group_map"]["Bronze"] += [{"id": u, "quota_pct": 1 + i % 7} for i, u in enumerate(BULK_USERS)]
    config["group_limits"] = {"Gold": {"max_queued": 1, "retry_after_s": 1},
                              "Silver": {"max_queue_wait_s": 0.001}}
    qos = state / "qos_config.json"
    qos.write_text(json.dumps(config))
    keys = {"admin": keys_add(state, "--all-users", "--admin"), "saas": keys_add(state, "--all-users")}
    proc = subprocess.Popen([str(BINARY), "serve", str(MODEL), "--host", "127.0.0.1", "--port", "0",
                             "--state-dir", str(state), "--qos-config-path", str(qos), "--kv-cache-blocks", "512",
                             "--max-num-seqs", "16", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    match = re.search(r"https://127\.0\.0\.1:(\d+)", proc.stdout.readline())
    assert match, "server did not start"
    ctx = ssl.create_default_context(cafile=str(state / "tls/cert.pem"))
    yield {"url": f"https://127.0.0.1:{match.group(1)}", "keys": keys, "ssl": ctx, "qos_path": str(qos)}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def call(server, path, body=None, key="admin", headers=None):
    h = dict(headers or {})
    if key:
        h["Authorization"] = f"Bearer {server['keys'][key]}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server["url"] + path, data=data, headers=h)
    try:
        with urllib.request.urlopen(req, context=server["ssl"], timeout=300) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def chat(server, user, tokens=2):
    return call(server, "/v1/chat/completions_qos", {"user_id": user, "max_tokens": tokens, "temperature": 0,
                                                     "messages": [{"role": "user", "content": "Hi"}]}, key="saas")[0]


def complete(server, user):
    """A one-token prompt and one generated token: many users' accounts at little engine cost."""
    return call(server, "/v1/completions_qos", {"user_id": user, "prompt": "Hi", "max_tokens": 1, "temperature": 0},
                key="saas")[0]


def test_the_page_is_never_open(server):
    status, body, headers = call(server, "/dashboard", key=None)
    assert status == 401 and "/admin/qos" not in body and "Set-Cookie" not in headers
    assert call(server, "/admin/qos", key=None, headers={"Cookie": "tiergate_dashboard=" + "0" * 64})[0] == 401
    assert call(server, "/dashboard", key="saas")[0] == 403  # a key, but not an admin key


@pytest.fixture(scope="module")
def loaded(server):
    """500 Bronze users with one request each, Gold past its queue bound, Silver past its wait bound."""
    with ThreadPoolExecutor(max_workers=32) as pool:
        bulk = pool.map(lambda u: complete(server, u), BULK_USERS)
        gold = pool.map(lambda i: chat(server, "user_id1" if i % 2 else "user_id2", 6), range(12))
        silver = pool.map(lambda i: chat(server, "user_id3", 4), range(12))
        statuses = list(bulk) + list(gold) + list(silver)
    assert statuses.count(200) >= 500
    assert 429 in statuses and 503 in statuses  # the page has non-zero 429 and 503 cells to show
    for _ in range(600):  # idle: the report holds still while the page and the test read it
        groups = json.loads(call(server, "/admin/qos")[1])["usage"]["groups"]
        if all(g["waiting"] == 0 and g["running"] == 0 for g in groups):
            break
        time.sleep(0.1)
    return statuses


def fmt_int(v):
    return f"{round(v):,}"


def fmt_pct(v):
    return f"{100 * v:.1f}%"


def fmt_sec(v):
    return f"{1000 * v:.0f} ms" if v < 1 else f"{v:.2f} s"


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium must not fetch a driver: Debian's is used
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "chromium/chromedriver missing: run: bash tools/bootstrap.sh browser"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--ignore-certificate-errors", "--window-size=1500,2200"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def cells(driver):
    """{data-k: (data-v, text)} of every number cell, read in one script run (the page redraws every
    second, so element handles go stale between calls)."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('[data-k]'))"
        ".map(e => [e.getAttribute('data-k'), e.getAttribute('data-v'), e.textContent]);")
    return {tuple(json.loads(k)): (v, text) for k, v, text in rows}


def server_time(driver):
    """The page's data-server-time, read in a script: sign-in replaces the body, so an element
    handle found before that can be stale when it is read."""
    return int(driver.execute_script("return document.body.getAttribute('data-server-time')") or 0)


def test_the_page_shows_what_admin_qos_says(server, loaded):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    report = json.loads(call(server, "/admin/qos")[1])
    driver = browser()
    try:
        driver.get(server["url"] + "/dashboard")
        assert "sign in" in driver.title.lower()
        driver.find_element(By.ID, "key").send_keys(server["keys"]["admin"])
        driver.find_element(By.ID, "sign-in").click()
        # Wait for a poll newer than the report the test read (the server is idle: same numbers).
        WebDriverWait(driver, 60).until(lambda d: server_time(d) > report["server_time_unix_ms"])
        report = json.loads(call(server, "/admin/qos")[1])
        WebDriverWait(driver, 60).until(lambda d: server_time(d) > report["server_time_unix_ms"])
        seen = cells(driver)
        after = json.loads(call(server, "/admin/qos")[1])
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1500, max(900, height + 40))
        driver.save_screenshot(str(SCREENSHOT))
        # The sign-in form comes with its 401 by design; anything else (a script error, a CSP
        # violation, a failed fetch) is a defect.
        problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")
                    and not (e["source"] == "network" and "/dashboard - " in e["message"] and "401" in e["message"])]
    finally:
        driver.quit()
    assert not problems, f"the page logged errors (a CSP violation?): {problems}"

    # The server is idle, but TTFT samples leave the one-minute window as time passes: the page's
    # numbers must match the report read just before or just after it was read.
    mismatches = [compare(r, seen, server) for r in (report, after)]
    assert not all(mismatches), mismatches[0]
    by_name = {g["name"]: g for g in report["usage"]["groups"]}
    assert by_name["Gold"]["refused_429"] > 0 and by_name["Silver"]["unavailable_503"] > 0
    bronze = [u for u in report["usage"]["users"] if u["group"] == "Bronze"]
    assert len(bronze) >= 500  # 500 users listed by the server, 10 shown, the rest in one row
    assert seen[("o", "Bronze", "count")][1] == f"{len(bronze) - 10:,} more users"
    assert SCREENSHOT.stat().st_size > 10_000


def compare(report, seen, server):
    """The cells that differ from `report` (empty when the page shows exactly what it says)."""
    bad = []

    def check(key, value, text=None):
        raw, shown = seen.get(key, (None, None))
        if raw is None or float(raw) != pytest.approx(value, abs=1e-9) or (text is not None and shown != text):
            bad.append((key, raw, shown, value, text))

    usage = report["usage"]
    if [g["name"] for g in usage["groups"]] != ["Platinum", "Gold", "Silver", "Bronze"]:
        bad.append(("groups", [g["name"] for g in usage["groups"]]))
    check(("cfg", "loaded_at_unix_ms"), report["config_source"]["loaded_at_unix_ms"])
    if seen.get(("cfg", "path"), (None, None))[1] != server["qos_path"]:
        bad.append(("cfg", "path"))
    for g in usage["groups"]:
        for f in ("waiting", "running", "preemptions", "refused_429", "unavailable_503", "weighted_tokens",
                  "requests", "ttft_samples"):
            check(("g", g["name"], f), g[f], fmt_int(g[f]))
        for f in ("ttft_p50_s", "ttft_p99_s"):
            check(("g", g["name"], f), g[f], fmt_sec(g[f]) if g["ttft_samples"] else "–")
        # Per user: the top 10 of the group by service, the rest summed in one row.
        users = sorted((u for u in usage["users"] if u["group"] == g["name"]),
                       key=lambda u: (-u["weighted_tokens"], u["user_id"]))
        shown = sorted(k[2] for k in seen if k[0] == "u" and k[1] == g["name"] and k[3] == "weighted_tokens")
        if shown != sorted(u["user_id"] for u in users[:10]):
            bad.append(("top users", g["name"], shown))
        for u in users[:10]:
            for f, show in (("quota_share", fmt_pct), ("served_share", fmt_pct), ("waiting", fmt_int),
                            ("running", fmt_int), ("requests", fmt_int), ("weighted_tokens", fmt_int)):
                check(("u", g["name"], u["user_id"], f), u[f], show(u[f]))
        rest = users[10:]
        if rest:
            check(("o", g["name"], "count"), len(rest))
            for f, show in (("weighted_tokens", fmt_int), ("requests", fmt_int), ("quota_share", fmt_pct),
                            ("waiting", fmt_int), ("running", fmt_int)):
                total = sum(u[f] for u in rest)
                check(("o", g["name"], f), total, show(total))
    return bad
