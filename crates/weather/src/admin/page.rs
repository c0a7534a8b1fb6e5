//! The live page of the admin listener (`GET /`): the versioned app graph the
//! way Kiali draws it, the stage in force and the others to switch to, and the
//! version matrix of the ingress's latest requests. Server-rendered HTML and
//! SVG from [`Stats`]; the page's own small script refreshes the panel and sends
//! the stage buttons' POSTs.

use askama::Template;

use crate::{
    dataplane::{
        Applied, Stats,
        stats::{Edge, INGRESS_PEER, Matrix, Peer, UNKNOWN_PEER, WINDOW},
    },
    stages, verify,
};

/// The whole page: the frame and the first panel.
#[derive(Template)]
#[template(path = "admin.html")]
pub struct Page {
    /// The panel, rendered (and escaped) by its own template.
    pub panel: String,
}

/// What refreshes: stage, graph and matrix.
#[derive(Template)]
#[template(path = "admin_panel.html")]
pub struct Panel {
    pub stage: Option<String>,
    /// The routing API in force (`weather up --api`).
    pub api: &'static str,
    pub meaning: String,
    /// Routing applied over the stage (`weather release`): who applied what.
    pub overlay: Option<String>,
    pub stages: Vec<StageButton>,
    pub graph: Graph,
    pub matrix: MatrixView,
    /// The ingress's latest requests, each with its trace when there is a
    /// viewer (`weather up --traces`).
    pub latest: Vec<LatestView>,
    pub viewer: Option<String>,
    pub window_s: u64,
}

/// How many of the ingress's latest requests the page lists.
const LATEST: usize = 10;

pub struct LatestView {
    pub who: &'static str,
    pub chain: String,
    pub crossing: bool,
    /// The viewer's page of the request's trace.
    pub trace_url: Option<String>,
}

pub struct StageButton {
    pub name: String,
    pub summary: String,
    pub current: bool,
}

pub struct Graph {
    pub width: u32,
    pub height: u32,
    pub nodes: Vec<NodeView>,
    pub edges: Vec<EdgeView>,
}

pub struct NodeView {
    pub label: String,
    pub x: u32,
    pub y: u32,
    /// Traffic went through it in the window.
    pub active: bool,
}

pub struct EdgeView {
    pub from: String,
    pub to: String,
    pub d: String,
    pub label_x: u32,
    pub label_y: u32,
    /// Requests per second, then error share and p99.
    pub rate: String,
    pub detail: String,
    /// `ok`, `error` or `crossing`: the edge's class.
    pub class: &'static str,
    pub width: String,
}

pub struct MatrixView {
    pub chains: Vec<ChainColumn>,
    pub rows: Vec<MatrixRow>,
    pub total: u64,
}

pub struct ChainColumn {
    pub chain: String,
    pub crossing: bool,
}

pub struct MatrixRow {
    pub who: &'static str,
    pub counts: Vec<u64>,
}

pub const NODE_W: u32 = 140;
pub const NODE_H: u32 = 36;
const COL_W: u32 = 310;
const ROW_H: u32 = 80;
const MARGIN: u32 = 10;

impl Panel {
    pub fn new(applied: &Applied, stats: &Stats, viewer: Option<&str>) -> Panel {
        let root = applied
            .stage
            .as_deref()
            .and_then(|s| stages::root_of(&applied.paths, s));
        let stage = applied.stage.clone();
        let api = stages::Api::of(&applied.paths);
        let meaning = match (&root, &stage) {
            (Some(r), Some(s)) => stages::summary_for(r, api, s),
            _ => format!(
                "routed by the manifests given with -f: {}",
                applied
                    .paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let stages = root
            .map(|r| {
                stages::names_for(&r, api)
                    .into_iter()
                    .map(|name| StageButton {
                        summary: stages::summary_for(&r, api, &name),
                        current: Some(&name) == stage.as_ref(),
                        name,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let overlay = applied
            .overlay
            .as_ref()
            .map(|o| format!("{}: {} applied over it", o.label, o.objects.join(", ")));
        Panel {
            stage,
            api: api.title(),
            meaning,
            overlay,
            stages,
            graph: graph(stats.peers(), &stats.edges()),
            matrix: matrix(stats.matrix()),
            latest: stats
                .latest(LATEST)
                .into_iter()
                .map(|l| LatestView {
                    who: if l.tester { "tester" } else { "everyone else" },
                    crossing: verify::is_crossing(&l.chain),
                    trace_url: viewer
                        .zip(l.trace.as_deref())
                        .map(|(v, t)| crate::zipkin::Zipkin::trace_page(v, t)),
                    chain: l.chain,
                })
                .collect(),
            viewer: viewer.map(str::to_owned),
            window_s: WINDOW.as_secs(),
        }
    }
}

/// The column of a node: the ingress, then each app in call order.
fn column(peer: &Peer, index: usize) -> u32 {
    if index == INGRESS_PEER {
        return 0;
    }
    match peer.app.as_str() {
        a if a == frontend::APP => 1,
        a if a == forecast::APP => 2,
        a if a == recommendation::APP => 3,
        _ => 4,
    }
}

/// Nodes per app and version in columns by call depth; an edge per source
/// and destination with traffic in the window.
fn graph(peers: &[std::sync::Arc<Peer>], edges: &[Edge]) -> Graph {
    let refused = edges.iter().any(|e| e.destination.is_none());
    let mut placed: Vec<(usize, u32)> = peers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != UNKNOWN_PEER || refused)
        .map(|(i, p)| {
            let col = if i == UNKNOWN_PEER { 4 } else { column(p, i) };
            (i, col)
        })
        .collect();
    placed.sort_by(|a, b| {
        (a.1, &peers[a.0].app, &peers[a.0].version).cmp(&(
            b.1,
            &peers[b.0].app,
            &peers[b.0].version,
        ))
    });
    let mut next_row = [0u32; 5];
    let mut at = vec![None; peers.len()];
    let mut nodes = Vec::new();
    let used_cols = placed.iter().map(|p| p.1).max().unwrap_or(0) + 1;
    for (i, col) in placed {
        let row = next_row[col as usize];
        next_row[col as usize] += 1;
        let (x, y) = (MARGIN + col * COL_W, MARGIN + 24 + row * ROW_H);
        at[i] = Some((x, y));
        let active = edges
            .iter()
            .any(|e| e.source == i || e.destination.unwrap_or(UNKNOWN_PEER) == i);
        let label = if i == UNKNOWN_PEER {
            "answered by the proxy".to_owned()
        } else {
            peers[i].node()
        };
        nodes.push(NodeView {
            label,
            x,
            y,
            active,
        });
    }
    let rows = next_row.iter().copied().max().unwrap_or(1).max(1);
    let views = edges
        .iter()
        .filter_map(|e| {
            let to = e.destination.unwrap_or(UNKNOWN_PEER);
            let (x1, y1) = at.get(e.source).copied().flatten()?;
            let (x2, y2) = at.get(to).copied().flatten()?;
            let (sx, sy) = (x1 + NODE_W, y1 + NODE_H / 2);
            let (tx, ty) = (x2, y2 + NODE_H / 2);
            let (from, to) = (&peers[e.source], &peers[to]);
            let chain = format!("{}:{},{}:{}", from.app, from.version, to.app, to.version);
            let class = if verify::is_crossing(&chain) {
                "crossing"
            } else if e.error_share > 0.0 {
                "error"
            } else {
                "ok"
            };
            let mid = (sx + tx) / 2;
            Some(EdgeView {
                from: from.node(),
                to: to.node(),
                d: format!("M{sx},{sy} C{mid},{sy} {mid},{ty} {tx},{ty}"),
                label_x: mid,
                label_y: (sy + ty) / 2 - 20,
                rate: format!("{:.1} rps", e.rps),
                detail: {
                    let mut d = format!(
                        "{:.0}% 5xx · p99 {}",
                        e.error_share * 100.0,
                        millis(e.p99_ms)
                    );
                    // The two commonest flags, as a fault or a breaker left them.
                    for (flag, n) in e.flags.iter().take(2) {
                        d.push_str(&format!(" · {flag} {n}"));
                    }
                    d
                },
                class,
                width: format!("{:.1}", 1.5 + (e.rps.max(0.0).ln_1p()).min(5.0)),
            })
        })
        .collect();
    Graph {
        width: MARGIN * 2 + (used_cols.max(4) - 1) * COL_W + NODE_W,
        height: MARGIN * 2 + 24 + rows * ROW_H,
        nodes,
        edges: views,
    }
}

fn millis(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn matrix(m: Matrix) -> MatrixView {
    let mut chains: Vec<String> = m.tester.keys().chain(m.anonymous.keys()).cloned().collect();
    chains.sort();
    chains.dedup();
    let row = |who, counts: &std::collections::BTreeMap<String, u64>| MatrixRow {
        who,
        counts: chains
            .iter()
            .map(|c| counts.get(c).copied().unwrap_or(0))
            .collect(),
    };
    let rows = vec![
        row("tester (cookie user=tester)", &m.tester),
        row("everyone else", &m.anonymous),
    ];
    let total = rows.iter().flat_map(|r| &r.counts).sum();
    MatrixView {
        chains: chains
            .into_iter()
            .map(|chain| ChainColumn {
                crossing: verify::is_crossing(&chain),
                chain,
            })
            .collect(),
        rows,
        total,
    }
}
