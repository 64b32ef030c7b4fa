//! Security events for the admin API and console: every refusal, failure and would-refuse
//! (monitor mode), with the request id, route, consumer, client, code, the refusal's title
//! and detail and, for detection, where the input was and a redacted excerpt of it.
//!
//! Kept in memory, bounded (the newest `admin.events`), and fanned out live to subscribers
//! (Server-Sent Events) through a broadcast channel: a subscriber that falls behind loses
//! events and is told so, the request path never waits for one. The durable, tamper-evident
//! record is the security log; this is its queryable, live view.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// One security event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Increasing from 1 for the life of the process (`Last-Event-ID` of the stream).
    pub id: u64,
    /// RFC 3339.
    pub time: String,
    /// Milliseconds since the Unix epoch (for filters and charts).
    pub unix_ms: u64,
    /// `refusal` (4xx), `failure` (5xx of ours) or `would_refuse` (monitor mode).
    pub kind: String,
    /// The enforcement mode the event was decided in: `enforce` or `monitor`.
    pub mode: String,
    /// The request's id, as its response and the logs carry it.
    pub request_id: String,
    /// The route, when one matched.
    pub route: Option<Arc<str>>,
    /// The consumer or subject, when one was identified.
    pub consumer: Option<String>,
    /// The client address (after trusted proxies).
    pub client: IpAddr,
    /// Method.
    pub method: String,
    /// Path, without its query.
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// The refusal's code (`None` for would-refuse only).
    pub code: Option<String>,
    /// The refusal's title.
    pub title: Option<String>,
    /// The refusal's detail, as the client got it.
    pub detail: Option<String>,
    /// Codes a monitor-mode policy would have refused with.
    pub monitored: Vec<String>,
    /// Where the input that decided was (detection), e.g. `a query parameter`.
    pub location: Option<String>,
    /// A redacted excerpt of that input ([`palisade_core::excerpt::redact`]).
    pub excerpt: Option<String>,
}

/// What a query of the store keeps; every given field must match.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Route name.
    pub route: Option<String>,
    /// Consumer or subject.
    pub consumer: Option<String>,
    /// Client address.
    pub client: Option<IpAddr>,
    /// Code: an exact code, or a prefix ending in `.` (`threat.`).
    pub code: Option<String>,
    /// `enforce` or `monitor`.
    pub mode: Option<String>,
    /// Events after this id.
    pub after: Option<u64>,
    /// From this time (ms since the epoch), inclusive.
    pub from_ms: Option<u64>,
    /// Until this time (ms since the epoch), exclusive.
    pub to_ms: Option<u64>,
}

impl Filter {
    /// Whether `e` passes.
    pub fn keeps(&self, e: &Event) -> bool {
        let code_ok = |want: &str| {
            let mut codes = e.code.iter().chain(e.monitored.iter());
            if want.ends_with('.') {
                codes.any(|c| c.starts_with(want))
            } else {
                codes.any(|c| c == want)
            }
        };
        self.route
            .as_deref()
            .is_none_or(|r| e.route.as_deref() == Some(r))
            && self
                .consumer
                .as_deref()
                .is_none_or(|c| e.consumer.as_deref() == Some(c))
            && self.client.is_none_or(|c| e.client == c)
            && self.code.as_deref().is_none_or(code_ok)
            && self.mode.as_deref().is_none_or(|m| e.mode == m)
            && self.after.is_none_or(|a| e.id > a)
            && self.from_ms.is_none_or(|f| e.unix_ms >= f)
            && self.to_ms.is_none_or(|t| e.unix_ms < t)
    }
}

/// The bounded store and its live fan-out.
#[derive(Debug)]
pub struct Events {
    ring: Mutex<VecDeque<Arc<Event>>>,
    cap: AtomicU64,
    next: AtomicU64,
    /// Events recorded since the start (also those that left the ring).
    pub total: AtomicU64,
    live: broadcast::Sender<Arc<Event>>,
}

/// How many events a live subscriber may fall behind before it loses some.
const LIVE_BACKLOG: usize = 1024;

impl Events {
    /// A store keeping the newest `cap` events.
    pub fn new(cap: usize) -> Self {
        Events {
            ring: Mutex::new(VecDeque::with_capacity(cap.min(4096))),
            cap: AtomicU64::new(cap as u64),
            next: AtomicU64::new(1),
            total: AtomicU64::new(0),
            live: broadcast::channel(LIVE_BACKLOG).0,
        }
    }

    /// Puts back events kept from an earlier run (oldest first); new ids continue after them.
    pub fn restore(&self, kept: Vec<Event>) {
        let cap = self.cap.load(Ordering::Relaxed) as usize;
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = 0;
        for e in kept
            .into_iter()
            .rev()
            .take(cap)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            last = last.max(e.id);
            ring.push_back(Arc::new(e));
        }
        self.next.fetch_max(last + 1, Ordering::Relaxed);
    }

    /// Keeps the newest `cap` from now on (a reload may change it).
    pub fn set_capacity(&self, cap: usize) {
        self.cap.store(cap.max(1) as u64, Ordering::Relaxed);
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        while ring.len() > cap.max(1) {
            ring.pop_front();
        }
    }

    /// Records an event (its id and time are set here) and sends it to live subscribers.
    pub fn record(&self, mut e: Event) {
        e.id = self.next.fetch_add(1, Ordering::Relaxed);
        e.unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let e = Arc::new(e);
        let cap = self.cap.load(Ordering::Relaxed) as usize;
        {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            while ring.len() >= cap {
                ring.pop_front();
            }
            ring.push_back(e.clone());
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        let _ = self.live.send(e);
    }

    /// The newest `limit` events that pass `f`, newest first.
    pub fn query(&self, f: &Filter, limit: usize) -> Vec<Arc<Event>> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter()
            .rev()
            .filter(|e| f.keeps(e))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Every kept event that passes `f`, oldest first (for aggregates and replays).
    pub fn all(&self, f: &Filter) -> Vec<Arc<Event>> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().filter(|e| f.keeps(e)).cloned().collect()
    }

    /// One event by id, while it is kept.
    pub fn get(&self, id: u64) -> Option<Arc<Event>> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let first = ring.front()?.id;
        let i = usize::try_from(id.checked_sub(first)?).ok()?;
        ring.get(i).filter(|e| e.id == id).cloned()
    }

    /// A live subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(route: &str, code: &str) -> Event {
        Event {
            id: 0,
            time: String::new(),
            unix_ms: 0,
            kind: "refusal".into(),
            mode: "enforce".into(),
            request_id: "r".into(),
            route: Some(route.into()),
            consumer: None,
            client: "127.0.0.1".parse().unwrap_or(IpAddr::from([127, 0, 0, 1])),
            method: "GET".into(),
            path: "/".into(),
            status: 403,
            code: Some(code.into()),
            title: None,
            detail: None,
            monitored: Vec::new(),
            location: None,
            excerpt: None,
        }
    }

    #[test]
    fn the_store_keeps_the_newest_and_finds_by_id_and_filter() {
        let s = Events::new(3);
        for i in 0..5 {
            s.record(event(if i % 2 == 0 { "a" } else { "b" }, "threat.detected"));
        }
        let all = s.query(&Filter::default(), 10);
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![5, 4, 3]);
        assert!(s.get(2).is_none() && s.get(4).is_some_and(|e| e.id == 4));
        let a = Filter {
            route: Some("a".into()),
            ..Filter::default()
        };
        assert_eq!(s.query(&a, 10).len(), 2);
        let prefix = Filter {
            code: Some("threat.".into()),
            ..Filter::default()
        };
        assert_eq!(s.query(&prefix, 10).len(), 3);
        let other = Filter {
            code: Some("threat".into()),
            ..Filter::default()
        };
        assert!(s.query(&other, 10).is_empty());
        assert_eq!(s.total.load(Ordering::Relaxed), 5);
    }
}
