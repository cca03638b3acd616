//! A name server for the tests: over UDP, it answers every A question with one address and
//! every other question with no answer. It stands for the upstream server a container's
//! resolver forwards names it does not know to.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TYPE_A: u16 = 1;

pub struct Upstream {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// Serves at `listen` port 53 until dropped, answering A questions with `answer`.
    pub fn start(listen: Ipv4Addr, answer: Ipv4Addr) -> Upstream {
        let socket = UdpSocket::bind(SocketAddr::from((listen, 53)))
            .unwrap_or_else(|e| panic!("cannot serve DNS at {listen}:53: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopping.load(Ordering::Relaxed) {
                let Ok((len, client)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = reply(&buf[..len], answer) {
                    let _ = socket.send_to(&reply, client);
                }
            }
        });
        Upstream {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answer to `query`: its header and question, and for an A question one record.
fn reply(query: &[u8], answer: Ipv4Addr) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    let question_end = end + 5;
    let qtype = u16::from_be_bytes([*query.get(end + 1)?, *query.get(end + 2)?]);
    query.get(question_end - 1)?;
    let is_a = qtype == TYPE_A;
    let mut reply = query[..question_end].to_vec();
    // QR, opcode 0, RD as asked, RA; NOERROR; one question, the answers, nothing else.
    reply[2] = 0x80 | (query[2] & 0x01);
    reply[3] = 0x80;
    reply[4..12].copy_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    if is_a {
        // The question's name (a pointer to offset 12), A, IN, TTL 60, 4 bytes.
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&answer.octets());
    }
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_a_question_gets_the_address() {
        // Arrange: id 0x1234, RD, one question: a.b A IN.
        let query = [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 1, b'b', 0, 0, 1, 0, 1,
        ];
        // Act
        let reply = reply(&query, Ipv4Addr::new(10, 9, 8, 7)).unwrap();
        // Assert
        assert_eq!(&reply[..4], &[0x12, 0x34, 0x81, 0x80]);
        assert_eq!(&reply[6..8], &[0, 1]);
        assert_eq!(&reply[reply.len() - 4..], &[10, 9, 8, 7]);
    }

    #[test]
    fn a_truncated_question_gets_nothing() {
        assert_eq!(
            reply(
                &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, b'a'],
                Ipv4Addr::LOCALHOST
            ),
            None
        );
    }
}
