from tests.e2e import test_browser as base
from tests.e2e.test_browser import _open

app_server, app_url, browser = base.app_server, base.app_url, base.browser

def test_dbg(browser, app_url):
    pg = _open(browser, app_url, 1366, 768)
    bad = []
    pg.on("response", lambda r: bad.append((r.status, r.url)) if r.status >= 400 else None)
    pg.reload()
    pg.wait_for_timeout(3000)
    print("BAD", bad)
    assert False
