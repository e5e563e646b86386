//! The dashboard at `/` in a real, headless Chromium driven through
//! chromedriver (WebDriver, fantoccini), against the real server with known
//! data: the rendered overview counts equal the API's overviews, the search
//! narrows the lists, the drill-down shows the parent's statuses page by
//! page (Next/Previous) and filtered by status, and with auth on, a 401 asks
//! for a token that is then sent with every call. Screenshots go to
//! `target/dashboard.png` and `target/dashboard-statuses.png`.
//!
//! Skipped (with a "skipped: …" line) where `/usr/bin/chromium` or
//! `/usr/bin/chromedriver` is missing; `.ci/run` installs both.

mod common;

use common::{http, TestServer};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PAGE: usize = 20;

/// chromedriver in a process group of its own; dropping it (also on a
/// panic) kills the group, so Chromium goes with it.
struct Driver {
    child: std::process::Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group this test started.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_browser() -> (Driver, Client) {
    let port = free_port();
    let child = std::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: tempfile::tempdir().unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{}/status", driver.url)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer on {}",
            driver.url
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = driver._profile.path().display().to_string();
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1100",
                format!("--user-data-dir={profile}"),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    (driver, client)
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("script runs")
}

/// Waits until no API call of the page is in flight and no part of it is
/// loading (every action sets its flag before it returns).
async fn settle(c: &Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = js(
            c,
            "return document.body.dataset.loading === 'false' && !document.querySelector('[data-loading=\"true\"]')",
        )
        .await;
        if done == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "the page did not settle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The parent rows shown: collection → ids, in order.
async fn parent_rows(c: &Client) -> BTreeMap<String, Vec<String>> {
    let rows = js(
        c,
        "return [...document.querySelectorAll('[data-testid=parent-row]')].map(r => [r.dataset.collection, r.dataset.parentId])",
    )
    .await;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows.as_array().unwrap() {
        out.entry(r[0].as_str().unwrap().to_owned())
            .or_default()
            .push(r[1].as_str().unwrap().to_owned());
    }
    out
}

/// The status rows shown: (id, status).
async fn status_rows(c: &Client) -> Vec<(String, String)> {
    let rows = js(
        c,
        "return [...document.querySelectorAll('[data-testid=status-row]')].map(r => [r.dataset.statusId, r.dataset.status])",
    )
    .await;
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_str().unwrap().to_owned()))
        .collect()
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn page_info(c: &Client) -> (String, String, String) {
    let v = js(
        c,
        "const p = document.querySelector('[data-testid=page-info]'); return [p.textContent, p.dataset.page, p.dataset.total]",
    )
    .await;
    let s = |i: usize| v[i].as_str().unwrap().to_owned();
    (s(0), s(1), s(2))
}

async fn button_disabled(c: &Client, testid: &str) -> bool {
    js(
        c,
        &format!("return document.querySelector('[data-testid={testid}]').disabled"),
    )
    .await
        == json!(true)
}

/// The test data: per collection, (id, displayName, user statuses, device statuses).
type Parents = Vec<(&'static str, &'static str, Vec<&'static str>, Vec<&'static str>)>;

const VALUES: [&str; 8] = [
    "unknown",
    "notApplicable",
    "compliant",
    "nonCompliant",
    "remediated",
    "error",
    "conflict",
    "notAssigned",
];

fn data() -> Vec<(&'static str, &'static str, Parents)> {
    // 45 device statuses cycling through every value: three pages of 20.
    let many: Vec<&str> = (0..45).map(|i| VALUES[i % VALUES.len()]).collect();
    vec![
        (
            "deviceCompliancePolicies",
            "deviceManagement/deviceCompliancePolicies",
            vec![
                (
                    "policy-win",
                    "Windows baseline",
                    vec![
                        "compliant",
                        "compliant",
                        "compliant",
                        "nonCompliant",
                        "error",
                        "conflict",
                        "unknown",
                    ],
                    many,
                ),
                (
                    "policy-win-strict",
                    "Windows strict <b>&amp;</b> 'quoted'",
                    vec!["nonCompliant", "nonCompliant", "notApplicable"],
                    vec!["compliant", "error"],
                ),
                ("policy-mac", "macOS baseline", vec![], vec![]),
            ],
        ),
        (
            "mobileAppConfigurations",
            "deviceAppManagement/mobileAppConfigurations",
            vec![
                (
                    "app-outlook",
                    "Outlook settings",
                    vec!["compliant", "unknown", "unknown"],
                    vec!["conflict", "compliant"],
                ),
                (
                    "app-teams",
                    "Teams settings",
                    vec!["remediated"],
                    vec!["notAssigned", "error", "error"],
                ),
            ],
        ),
        (
            "deviceConfigurations",
            "deviceManagement/deviceConfigurations",
            vec![
                (
                    "config-wifi",
                    "Wi-Fi corporate",
                    vec!["compliant", "compliant", "nonCompliant"],
                    vec!["unknown", "compliant", "compliant", "compliant"],
                ),
                (
                    "config-windows-update",
                    "Windows update ring",
                    vec!["error"],
                    vec!["conflict"],
                ),
            ],
        ),
    ]
}

fn parent_type(collection: &str) -> &'static str {
    match collection {
        "deviceCompliancePolicies" => "#microsoft.graph.windows10CompliancePolicy",
        "mobileAppConfigurations" => "#microsoft.graph.iosMobileAppConfiguration",
        _ => "#microsoft.graph.windows10GeneralConfiguration",
    }
}

async fn post(url: &str, body: &Value, token: Option<&str>) {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    assert_eq!(status, 201, "POST {url}: {}", resp.text().await.unwrap());
}

async fn get_json(url: &str) -> Value {
    let r = http("GET", url, None).await;
    assert_eq!(r.status, 200, "GET {url}: {}", r.text);
    r.json()
}

async fn create_data(base: &str) {
    for (collection, path, parents) in data() {
        for (id, name, users, devices) in parents {
            let parent = json!({"@odata.type": parent_type(collection), "id": id, "displayName": name});
            post(&format!("{base}/beta/{path}"), &parent, None).await;
            for (i, s) in users.iter().enumerate() {
                let body = json!({"id": format!("u{i:03}"), "userDisplayName": format!("User {i}"), "userPrincipalName": format!("user{i}@contoso.test"), "devicesCount": 1, "status": s, "lastReportedDateTime": "2026-11-01T08:00:00Z"});
                post(&format!("{base}/beta/{path}/{id}/userStatuses"), &body, None).await;
            }
            for (i, s) in devices.iter().enumerate() {
                let body = json!({"id": format!("d{i:03}"), "deviceDisplayName": format!("DESKTOP-{i:04}"), "userName": format!("User {i}"), "deviceModel": "Surface Laptop 5", "platform": 1, "status": s, "lastReportedDateTime": "2026-11-02T09:30:00Z", "userPrincipalName": format!("user{i}@contoso.test")});
                post(&format!("{base}/beta/{path}/{id}/deviceStatuses"), &body, None).await;
            }
        }
    }
}

/// Compares every overview the page shows with the API's (every count
/// property, and the total).
async fn check_counts(c: &Client, base: &str) -> usize {
    let schema = get_json(&format!("{base}/dashboard/schema.json")).await;
    let mut checked = 0;
    for coll in schema["collections"].as_array().unwrap() {
        let collection = coll["collection"].as_str().unwrap();
        let path = coll["path"].as_str().unwrap();
        let (_, _, parents) = data().into_iter().find(|(c, _, _)| *c == collection).unwrap();
        for (id, _, _, _) in parents {
            for st in coll["statuses"].as_array().unwrap() {
                let shape = st["shape"].as_str().unwrap();
                let api = get_json(&format!("{base}/beta/{path}/{id}/{}", st["overview"].as_str().unwrap())).await;
                let expected: BTreeMap<String, i64> = api
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| k.ends_with("Count"))
                    .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
                    .collect();
                let script = format!(
                    "const o = document.querySelector('[data-testid=parent-row][data-collection={collection}][data-parent-id=\"{id}\"] [data-testid=overview][data-shape={shape}]');
                     return o ? Object.fromEntries([...o.querySelectorAll('[data-count]')].map(b => [b.dataset.count, Number(b.textContent)])) : null"
                );
                let shown = js(c, &script).await;
                let mut shown: BTreeMap<String, i64> = serde_json::from_value(shown)
                    .unwrap_or_else(|e| panic!("{collection}/{id} {shape}: no overview on the page ({e})"));
                let total = shown.remove("total").expect("a total");
                assert_eq!(shown, expected, "{collection}/{id} {shape}: the page against the API");
                assert_eq!(
                    total,
                    expected.values().sum::<i64>(),
                    "{collection}/{id} {shape}: total"
                );
                checked += 1;
            }
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium() {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(tool).exists() {
            println!("skipped: {tool} is missing (apt-get install chromium chromium-driver)");
            return;
        }
    }
    let started = Instant::now();
    let server = TestServer::start().await;
    let base = server.base_url();

    // The page and its assets: types, caching, the CSP; open routes.
    let page = http("GET", &format!("{base}/"), None).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["cache-control"], "no-cache");
    assert_eq!(
        page.headers["content-security-policy"],
        "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:"
    );
    for (path, ty) in [
        ("/dashboard/dashboard.css", "text/css; charset=utf-8"),
        ("/dashboard/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard/schema.json", "application/json"),
    ] {
        let r = http("GET", &format!("{base}{path}"), None).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], ty, "{path}");
        assert_eq!(r.headers["cache-control"], "no-cache", "{path}");
    }
    create_data(&base).await;

    let (driver, c) = start_browser().await;
    c.goto(&format!("{base}/?top={PAGE}")).await.unwrap();
    settle(&c).await;

    // Every parent listed under its collection, every overview as the API has it.
    let rows = parent_rows(&c).await;
    for (collection, _, parents) in data() {
        let expected: Vec<String> = parents.iter().map(|p| p.0.to_owned()).collect();
        let mut shown = rows.get(collection).cloned().unwrap_or_default();
        shown.sort();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert_eq!(shown, expected_sorted, "{collection}");
    }
    assert_eq!(check_counts(&c, &base).await, 7 * 2);
    // The names are text, not markup.
    let name = c
        .find(Locator::Css(
            "[data-parent-id=policy-win-strict] [data-testid=parent-open]",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(name, "Windows strict <b>&amp;</b> 'quoted'");
    // Visible numbers and the bar's titles carry the counts too.
    let success = c
        .find(Locator::Css(
            "[data-parent-id=policy-win] [data-shape=user] [data-count=successCount]",
        ))
        .await
        .unwrap();
    assert_eq!(success.text().await.unwrap(), "3");
    let title = js(&c, "return document.querySelector('[data-parent-id=policy-win] [data-shape=user] .seg[data-segment=success]').title").await;
    assert_eq!(title, json!("Succeeded: 3 of 7 (42.9 %)"));
    let legend = c
        .find(Locator::Css("[data-testid=legend]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for label in ["Succeeded", "Failed / error", "Conflict", "Pending", "Not applicable"] {
        assert!(legend.contains(label), "legend: {legend}");
    }
    std::fs::create_dir_all(target_dir()).unwrap();
    std::fs::write(target_dir().join("dashboard.png"), c.screenshot().await.unwrap()).unwrap();

    // Search narrows every list to the names starting with the text.
    let search = c.find(Locator::Css("[data-testid=search]")).await.unwrap();
    search.send_keys("Windows").await.unwrap();
    settle(&c).await;
    let rows = parent_rows(&c).await;
    let mut shown: Vec<String> = rows.values().flatten().cloned().collect();
    shown.sort();
    assert_eq!(shown, ["config-windows-update", "policy-win", "policy-win-strict"]);
    search.send_keys(" s").await.unwrap();
    settle(&c).await;
    let rows = parent_rows(&c).await;
    assert_eq!(rows.values().flatten().collect::<Vec<_>>(), ["policy-win-strict"]);
    js(&c, "const s = document.querySelector('[data-testid=search]'); s.value = ''; s.dispatchEvent(new Event('input')); return null").await;
    settle(&c).await;
    assert_eq!(parent_rows(&c).await.values().flatten().count(), 7);

    // Drill-down: policy-win's device statuses, three pages of 20, 20, 5.
    let path = "deviceManagement/deviceCompliancePolicies/policy-win";
    let all = get_json(&format!("{base}/beta/{path}/deviceStatuses?$top=1000")).await;
    let api_statuses: BTreeMap<String, String> = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(api_statuses.len(), 45);
    click(&c, "[data-parent-id=policy-win] [data-testid=parent-open]").await;
    settle(&c).await;
    let title = c
        .find(Locator::Css("[data-testid=detail-title]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(title, "Windows baseline");
    // The user statuses tab first: the seven of policy-win.
    let users = status_rows(&c).await;
    assert_eq!(
        users.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["u000", "u001", "u002", "u003", "u004", "u005", "u006"]
    );
    assert_eq!(users[3].1, "nonCompliant");
    click(&c, "[data-testid=tab-deviceStatuses]").await;
    settle(&c).await;
    let mut pages = Vec::new();
    for (n, rows) in [(1, PAGE), (2, PAGE), (3, 5)] {
        if n > 1 {
            assert!(!button_disabled(&c, "next-page").await, "Next on page {}", n - 1);
            click(&c, "[data-testid=next-page]").await;
            settle(&c).await;
        }
        let page = status_rows(&c).await;
        assert_eq!(page.len(), rows, "rows on page {n}");
        let (text, number, total) = page_info(&c).await;
        assert_eq!(number, n.to_string());
        assert_eq!(total, "45", "{text}");
        assert_eq!(button_disabled(&c, "prev-page").await, n == 1, "Previous on page {n}");
        pages.push(page);
    }
    assert!(button_disabled(&c, "next-page").await, "Next on the last page");
    let seen: BTreeMap<String, String> = pages.iter().flatten().cloned().collect();
    assert_eq!(seen.len(), 45, "the pages overlap");
    assert_eq!(seen, api_statuses, "the rows against the API");
    click(&c, "[data-testid=prev-page]").await;
    settle(&c).await;
    assert_eq!(status_rows(&c).await, pages[1], "Previous shows page 2 again");
    assert_eq!(page_info(&c).await.1, "2");
    click(&c, "[data-testid=prev-page]").await;
    settle(&c).await;
    assert_eq!(status_rows(&c).await, pages[0], "and page 1");
    assert_ne!(pages[0], pages[1]);

    // The status filter: only matching rows, all of them.
    for value in ["compliant", "conflict"] {
        c.find(Locator::Css("[data-testid=status-filter]"))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
        settle(&c).await;
        let rows = status_rows(&c).await;
        let expected: BTreeSet<&String> = api_statuses
            .iter()
            .filter(|(_, s)| *s == value)
            .map(|(id, _)| id)
            .collect();
        assert!(!expected.is_empty());
        assert!(rows.iter().all(|(_, s)| s == value), "{value}: {rows:?}");
        assert_eq!(
            rows.iter().map(|(id, _)| id).collect::<BTreeSet<_>>(),
            expected,
            "{value}"
        );
        assert_eq!(page_info(&c).await.2, expected.len().to_string());
    }
    std::fs::write(
        target_dir().join("dashboard-statuses.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    click(&c, "[data-testid=back]").await;
    let detail = c.find(Locator::Css("[data-testid=detail]")).await.unwrap();
    assert!(!detail.is_displayed().await.unwrap(), "Back hides the statuses");
    assert_eq!(parent_rows(&c).await.values().flatten().count(), 7);

    // With auth on: a 401 asks for a token; a bad one is refused, a good
    // one is sent with every call.
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = statusd::cli::dev_keys::write(keys_dir.path()).unwrap();
    let (auth_server, _auth_dir) = common::start_with(|cfg| {
        cfg.auth_jwks = Some(keys.jwks.display().to_string());
        cfg.auth_issuer = Some("https://statusd.dev".into());
        cfg.auth_audience = vec!["api://statusd".into()];
    })
    .await;
    let token = statusd::cli::token::mint(&statusd::cli::token::TokenArgs {
        key: keys.private_key.clone(),
        kid: keys.kid.clone(),
        issuer: "https://statusd.dev".into(),
        audience: "api://statusd".into(),
        scope: Some("DeviceManagementConfiguration.ReadWrite.All DeviceManagementApps.ReadWrite.All".into()),
        roles: vec![],
        ttl: Duration::from_secs(600),
        subject: "dashboard-test".into(),
        alg: None,
    })
    .unwrap();
    let auth_base = format!("http://{}", auth_server.local_addr());
    post(
        &format!("{auth_base}/beta/deviceManagement/deviceConfigurations"),
        &json!({"@odata.type": parent_type("deviceConfigurations"), "id": "secured", "displayName": "Behind auth"}),
        Some(&token),
    )
    .await;
    post(
        &format!("{auth_base}/beta/deviceManagement/deviceConfigurations/secured/userStatuses"),
        &json!({"status": "compliant"}),
        Some(&token),
    )
    .await;
    c.goto(&format!("{auth_base}/")).await.unwrap();
    settle(&c).await;
    let auth = c.find(Locator::Css("[data-testid=auth]")).await.unwrap();
    assert!(auth.is_displayed().await.unwrap(), "a 401 shows the token form");
    assert!(parent_rows(&c).await.is_empty());
    c.find(Locator::Css("[data-testid=token]"))
        .await
        .unwrap()
        .send_keys("not-a-token")
        .await
        .unwrap();
    click(&c, "[data-testid=token-save]").await;
    settle(&c).await;
    let error = c.find(Locator::Css("[data-testid=error]")).await.unwrap();
    assert!(error.is_displayed().await.unwrap());
    assert!(
        error.text().await.unwrap().contains("refused"),
        "{}",
        error.text().await.unwrap()
    );
    assert!(auth.is_displayed().await.unwrap());
    c.find(Locator::Css("[data-testid=token]"))
        .await
        .unwrap()
        .send_keys(&token)
        .await
        .unwrap();
    click(&c, "[data-testid=token-save]").await;
    settle(&c).await;
    assert!(!auth.is_displayed().await.unwrap(), "the token was taken");
    let rows = parent_rows(&c).await;
    assert_eq!(
        rows.get("deviceConfigurations").map(Vec::as_slice),
        Some(&["secured".to_owned()][..])
    );
    let n = js(&c, "return document.querySelector('[data-parent-id=secured] [data-shape=user] [data-count=successCount]').textContent").await;
    assert_eq!(n, json!("1"));
    assert!(!c
        .find(Locator::Css("[data-testid=error]"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    assert_eq!(
        js(&c, "return sessionStorage.getItem('statusd.token')").await,
        json!(token)
    );

    c.close().await.unwrap();
    drop(driver);
    auth_server.shutdown().await.unwrap();
    println!("dashboard test: {:.1}s", started.elapsed().as_secs_f64());
}
