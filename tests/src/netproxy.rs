//! Network faults without privileges: every node-to-node connection of a
//! test cluster goes through a TCP proxy owned by the test, which knows who
//! is talking to whom (the dialer's first frame is Runnel's internal
//! handshake, `RNL\x01` + a postcard `Handshake` naming its node id) and
//! obeys the nemesis: **cut** a pair of nodes (connections closed, new ones
//! refused, both directions), or **stall** one direction (bytes from a to b
//! held — TCP backpressure — until released: one-way link loss and
//! hold/release of messages). Kafka clients' connections are never cut.
//!
//! Everything listens on 127.0.0.1 only; every loop polls a stop flag and
//! ends when the proxy set is dropped.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MAGIC: &[u8; 4] = b"RNL\x01";
/// The handshake frame is tiny; anything larger is not one.
const HANDSHAKE_BYTES_MAX: usize = 4096;
const POLL: Duration = Duration::from_millis(50);

#[derive(Default, Debug)]
struct Rules {
    /// Unordered pairs (low, high) that cannot talk.
    cut: BTreeSet<(u32, u32)>,
    /// Directions (from, to) whose bytes are held.
    stalled: BTreeSet<(u32, u32)>,
}

impl Rules {
    fn is_cut(&self, a: u32, b: u32) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }
}

/// The proxies of one cluster and the rules they obey.
pub struct Net {
    rules: Arc<Mutex<Rules>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Default for Net {
    fn default() -> Self {
        Net {
            rules: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }
}

impl Net {
    /// A proxy in front of node `target`'s port; returns the proxy's port.
    pub fn proxy(&mut self, target: u32, target_port: u16) -> u16 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind a proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let rules = self.rules.clone();
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (rules, stop) = (rules.clone(), stop.clone());
                        std::thread::spawn(move || {
                            connection(client, target, target_port, rules, stop)
                        });
                    }
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        }));
        port
    }

    /// `a` and `b` cannot reach each other until healed.
    pub fn cut(&self, a: u32, b: u32) {
        self.rules
            .lock()
            .expect("rules")
            .cut
            .insert((a.min(b), a.max(b)));
    }

    /// `node` cannot reach any of `others` (nor they it).
    pub fn isolate(&self, node: u32, others: &[u32]) {
        for o in others.iter().filter(|o| **o != node) {
            self.cut(node, *o);
        }
    }

    /// Bytes from `from` to `to` are held (the other direction flows).
    pub fn stall(&self, from: u32, to: u32) {
        self.rules.lock().expect("rules").stalled.insert((from, to));
    }

    /// Every cut and stall is lifted.
    pub fn heal(&self) {
        let mut r = self.rules.lock().expect("rules");
        r.cut.clear();
        r.stalled.clear();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The node id in a postcard `Handshake { protocol_version: u16,
/// cluster_id: String, node_id: u32 }`.
fn handshake_node(payload: &[u8]) -> Option<u32> {
    let mut at = 0;
    varint(payload, &mut at)?; // protocol version
    let len = varint(payload, &mut at)? as usize;
    at = at.checked_add(len)?;
    u32::try_from(varint(payload, &mut at)?).ok()
}

/// Reads the dialer's first bytes: (bytes to forward, its node id if it is a node).
fn identify(client: &mut TcpStream) -> Option<(Vec<u8>, Option<u32>)> {
    client.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = [0u8; 4];
    client.read_exact(&mut head).ok()?;
    if &head != MAGIC {
        return Some((head.to_vec(), None));
    }
    let mut len = [0u8; 4];
    client.read_exact(&mut len).ok()?;
    let n = u32::from_be_bytes(len) as usize;
    if n > HANDSHAKE_BYTES_MAX {
        return None;
    }
    let mut payload = vec![0u8; n];
    client.read_exact(&mut payload).ok()?;
    let node = handshake_node(&payload);
    let mut all = head.to_vec();
    all.extend_from_slice(&len);
    all.extend_from_slice(&payload);
    Some((all, node))
}

fn connection(
    mut client: TcpStream,
    target: u32,
    target_port: u16,
    rules: Arc<Mutex<Rules>>,
    stop: Arc<AtomicBool>,
) {
    let Some((first, source)) = identify(&mut client) else {
        return;
    };
    if source.is_some_and(|s| rules.lock().expect("rules").is_cut(s, target)) {
        return; // refused while cut
    }
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target_port)) else {
        return;
    };
    if upstream.write_all(&first).is_err() {
        return;
    }
    let (c2, u2) = match (client.try_clone(), upstream.try_clone()) {
        (Ok(c), Ok(u)) => (c, u),
        _ => return,
    };
    let (r2, s2) = (rules.clone(), stop.clone());
    let back = std::thread::spawn(move || pump(u2, c2, Some(target), source, r2, s2));
    pump(client, upstream, source, Some(target), rules, stop);
    let _ = back.join();
}

/// Copies bytes `from` → `to` while the rules allow; closes both on a cut.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    from_node: Option<u32>,
    to_node: Option<u32>,
    rules: Arc<Mutex<Rules>>,
    stop: Arc<AtomicBool>,
) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 64 << 10];
    let close = |a: &TcpStream, b: &TcpStream| {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    };
    while !stop.load(Ordering::Relaxed) {
        if let (Some(a), Some(b)) = (from_node, to_node) {
            let (cut, stalled) = {
                let r = rules.lock().expect("rules");
                (r.is_cut(a, b), r.stalled.contains(&(a, b)))
            };
            if cut {
                return close(&from, &to);
            }
            if stalled {
                std::thread::sleep(POLL);
                continue;
            }
        }
        match from.read(&mut buf) {
            Ok(0) => return close(&from, &to),
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return close(&from, &to);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return close(&from, &to),
        }
    }
    close(&from, &to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshakes_node_id_is_read() {
        // protocol 1, cluster "abc", node 3000 (varint 0xb8 0x17).
        let payload = [1u8, 3, b'a', b'b', b'c', 0xb8, 0x17];
        assert_eq!(handshake_node(&payload), Some(3000));
        assert_eq!(handshake_node(&[1, 9, b'a']), None, "truncated");
    }

    #[test]
    fn a_cut_pair_cannot_talk_and_heals() {
        let server = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let server_port = server.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in server.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let mut net = Net::default();
        let port = net.proxy(2, server_port);
        let dial = |from: u32| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut hs = MAGIC.to_vec();
            let payload = [1u8, 1, b'c', from as u8];
            hs.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            hs.extend_from_slice(&payload);
            s.write_all(&hs).unwrap();
            let mut echo = vec![0u8; hs.len()];
            s.read_exact(&mut echo).map(|_| s)
        };
        assert!(dial(1).is_ok(), "connected through the proxy");
        net.cut(1, 2);
        assert!(dial(1).is_err(), "refused while cut");
        assert!(dial(3).is_ok(), "others still pass");
        net.heal();
        assert!(dial(1).is_ok(), "healed");
    }
}
