//! Every metric the chart's Grafana dashboard and PrometheusRule name exists in a scrape
//! of what runs: the real `postern-listener` binary (with the config the operator rendered
//! for an `EsmtpListener`) and the operator's controller, in-process against the e2e
//! control plane, after it reconciled that listener.
//!
//! Series with fixed labels exist from the start; the rest appear when something happens,
//! so the listener gets real traffic first: one message relayed to a smarthost (Postfix's
//! `smtp-sink`, which defers every RCPT, so the message stays queued for its site and a
//! connection to the site was opened) and one recipient refused (a rejection).
//!
//! The chart is rendered with `helm template` (both toggles on); metric names are read
//! from each PromQL expression with a real PromQL parser (`promql-parser`), Grafana's
//! `$__rate_interval` replaced by a duration first; the dashboard's `label_values(...)`
//! variable queries are read too. A scrape "has" a metric when it declares it (`# TYPE`,
//! with the suffixes Prometheus gives counters and histograms) or holds a sample of it, so
//! a series that exists only once something happened (a bounce, a failed reload) counts.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use postern_e2e::require_cluster;
use postern_operator::crd::EsmtpListener;
use promql_parser::{
    parser::{self, Expr},
    util::{ExprVisitor, walk_expr},
};
use serde_yaml::Value;
use support::{
    apply_listener,
    listener::{Process, free_port, http, require_tool, run_rendered},
    setup, wait_ready,
};

/// Collects the metric names of every selector in an expression.
struct Names<'a>(&'a mut BTreeSet<String>);

impl ExprVisitor for Names<'_> {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        let selector = match expr {
            Expr::VectorSelector(vs) => Some(vs),
            Expr::MatrixSelector(ms) => Some(&ms.vs),
            _ => None,
        };
        if let Some(name) = selector.and_then(|vs| vs.name.clone()) {
            self.0.insert(name);
        }
        Ok(true)
    }
}

/// The metric names `promql` selects. Grafana's interval variables become `5m` first;
/// other `$variables` sit inside label values, where they are plain text.
fn metric_names(promql: &str) -> Result<BTreeSet<String>> {
    let query = promql
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    let expr = parser::parse(&query).map_err(|e| anyhow::anyhow!("{e}: {promql}"))?;
    let mut names = BTreeSet::new();
    let Ok(_) = walk_expr(&mut Names(&mut names), &expr);
    Ok(names)
}

/// The metric names a Prometheus text exposition has: sample names, and for each
/// `# TYPE` line the names its samples carry (`_total` for counters; `_bucket`, `_sum`
/// and `_count` for histograms).
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let mut words = decl.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            if end > 0 {
                names.insert(line[..end].to_string());
            }
        }
    }
    names
}

#[test]
fn names_are_read_from_promql_and_from_expositions() {
    let names = metric_names(
        r#"sum by (pod) (rate(a_total{pod=~"$pod"}[$__rate_interval])) / on (pod) group_left () max(b) > 0.5 * time()"#,
    )
    .unwrap();
    assert_eq!(names, BTreeSet::from(["a_total".into(), "b".into()]));
    assert!(metric_names("sum(rate(x[5m]) by (").is_err());
    let exposed = exposed_names(
        "# HELP c Counted.\n# TYPE c counter\n# TYPE h histogram\n# TYPE g gauge\ng{x=\"1\"} 2\nu 1\n# EOF\n",
    );
    let want = ["c_total", "h_bucket", "h_sum", "h_count", "g", "u"].map(String::from);
    assert_eq!(exposed, BTreeSet::from(want));
}

/// The chart rendered with the dashboard and the rules on: the PromQL of every alert,
/// dashboard panel and dashboard variable.
fn chart_queries(helm: &PathBuf) -> Result<Vec<String>> {
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/postern");
    let out = Command::new(helm)
        .args(["template", "observability"])
        .arg(&chart)
        .args([
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "grafanaDashboard.enabled=true",
        ])
        .output()
        .with_context(|| format!("running {}", helm.display()))?;
    ensure!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout)?;
    let mut queries = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let doc: Value = serde::Deserialize::deserialize(doc)?;
        match doc["kind"].as_str() {
            Some("PrometheusRule") => {
                for group in doc["spec"]["groups"].as_sequence().context("groups")? {
                    for rule in group["rules"].as_sequence().context("rules")? {
                        queries.push(rule["expr"].as_str().context("expr")?.to_string());
                    }
                }
            }
            Some("ConfigMap") if doc["metadata"]["labels"]["grafana_dashboard"] == "1" => {
                let json = doc["data"]["postern.json"]
                    .as_str()
                    .context("postern.json")?;
                let dashboard: serde_json::Value = serde_json::from_str(json)?;
                for panel in dashboard["panels"].as_array().context("panels")? {
                    for target in panel["targets"].as_array().into_iter().flatten() {
                        queries.push(target["expr"].as_str().context("expr")?.to_string());
                    }
                }
                for var in dashboard["templating"]["list"]
                    .as_array()
                    .context("templating")?
                {
                    // label_values(SELECTOR, LABEL): the selector is PromQL.
                    if let Some(q) = var["query"]["query"].as_str() {
                        let inner = q
                            .strip_prefix("label_values(")
                            .and_then(|r| r.rsplit_once(','))
                            .map(|(selector, _)| selector.trim().to_string())
                            .with_context(|| format!("variable query {q}"))?;
                        queries.push(inner);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(queries)
}

/// One SMTP session with the listener from loopback, which is not in `relayHosts`: a
/// message for the domain it relays to, accepted, and a recipient elsewhere, refused.
fn smtp_traffic(addr: SocketAddr) -> Result<()> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut expect = |send: &str, code: &str| -> Result<()> {
        if !send.is_empty() {
            writer.write_all(send.as_bytes())?;
        }
        loop {
            let mut line = String::new();
            ensure!(reader.read_line(&mut line)? > 0, "closed after {send:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                ensure!(line.starts_with(code), "after {send:?}: {line}");
                return Ok(());
            }
        }
    };
    expect("", "220")?;
    expect("EHLO client.example\r\n", "250")?;
    expect("MAIL FROM:<sender@example.org>\r\n", "250")?;
    expect("RCPT TO:<user@elsewhere.example>\r\n", "550")?;
    expect("RCPT TO:<user@example.com>\r\n", "250")?;
    expect("DATA\r\n", "354")?;
    expect("Subject: observability\r\n\r\nHello.\r\n.\r\n", "250")?;
    expect("QUIT\r\n", "221")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_every_metric_the_dashboard_and_alerts_name_is_exposed() -> Result<()> {
    let cluster = require_cluster!(
        "e2e_every_metric_the_dashboard_and_alerts_name_is_exposed",
        Ok(())
    );
    let queries = chart_queries(&cluster.tool("helm"))?;
    let mut named = BTreeSet::new();
    for q in &queries {
        named.extend(metric_names(q)?);
    }
    ensure!(
        queries.len() >= 40 && named.len() >= 30,
        "{} queries naming {} metrics: the chart rendered less than it should",
        queries.len(),
        named.len()
    );

    // The operator, after reconciling one listener to Ready.
    // The smarthost: smtp-sink, answering every RCPT with a 4xx.
    let Some(sink_bin) = require_tool("/usr/sbin/smtp-sink") else {
        return Ok(());
    };
    let sink_port = free_port()?;
    let _sink = Process(
        Command::new(sink_bin)
            .args(["-u", "root", "-r", "RCPT"])
            .arg(format!("127.0.0.1:{sink_port}"))
            .arg("16")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting smtp-sink")?,
    );

    let (ns, operator) = setup(&cluster, "observe").await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(
        &api,
        "mx",
        &format!(
            "
listeners:
  - listen: 0.0.0.0:25
    hostname: mx.example.com
    relayHosts: [10.0.0.0/8]
    domains:
      example.com: {{relayTo: true}}
    delivery:
      smarthost: {{host: 127.0.0.1, port: {sink_port}, tls: none}}
      retryInterval: 1h
"
        ),
    )
    .await?;
    wait_ready(&api, "mx").await?;
    let namespace = ns.name().to_string();
    // The reconcile writes the Ready condition before it returns and records its
    // outcome in the gauge, so a scrape right after the condition may still say 0.
    let ready_sample = format!(
        "postern_operator_listener_ready{{listener_namespace=\"{namespace}\",listener_name=\"mx\"}} 1"
    );
    let mut operator_scrape = operator.metrics.encode();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !operator_scrape.contains(&ready_sample) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        operator_scrape = operator.metrics.encode();
    }
    let rendered = support::rendered_config(&ns, "mx").await?;
    operator.stop().await;
    ns.cleanup().await?;

    // The listener binary on the rendered config; what a pod provides is rewritten.
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let listener = run_rendered(&rendered, admin, &BTreeMap::new()).await?;
    smtp_traffic(listener.smtp)?;
    // The deferred message is queued for its site, after one connection to it.
    let mut listener_scrape = String::new();
    for _ in 0..600 {
        let (status, body) = http(admin, "GET", "/metrics")?;
        ensure!(status == 200, "/metrics: {status}");
        listener_scrape = body;
        if listener_scrape.contains("postern_delivery_queue_depth{")
            && listener_scrape.contains("postern_delivery_connections_open{")
            && listener_scrape.contains("postern_delivery_attempts_total{outcome=\"transient\"} 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let from_operator = exposed_names(&operator_scrape);
    let from_listener = exposed_names(&listener_scrape);
    let missing: Vec<String> = named
        .iter()
        .filter(|name| {
            if name.starts_with("postern_operator_") {
                !from_operator.contains(*name)
            } else {
                !from_listener.contains(*name)
            }
        })
        .cloned()
        .collect();
    ensure!(
        missing.is_empty(),
        "named by the chart's dashboard or alerts but not exposed: {missing:?}\n\
         listener scrape:\n{listener_scrape}\noperator scrape:\n{operator_scrape}"
    );
    // Values the scrapes must carry now, not just declare.
    for sample in [
        "postern_ready 1",
        "postern_tls_certificate_not_after_timestamp_seconds{listener=",
        "postern_spool_high_water_ratio{listener=",
        "postern_spool_filesystem_used_ratio ",
    ] {
        ensure!(
            listener_scrape.contains(sample),
            "the listener's scrape has no {sample}:\n{listener_scrape}"
        );
    }
    ensure!(
        operator_scrape.contains(&ready_sample),
        "the operator's scrape has no ready gauge for mx:\n{operator_scrape}"
    );
    Ok(())
}
