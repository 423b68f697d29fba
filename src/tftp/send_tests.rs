//! Unit tests of the sending state machine: loss, duplication, roll-over,
//! back-off and repeated requests, on a virtual clock.

use super::*;
use crate::body::Body;
use bytes::Bytes;

fn negotiated(block_size: u16, window_size: u16, oack: bool) -> Negotiated {
    Negotiated {
        block_size,
        window_size,
        timeout: Duration::from_secs(1),
        oack: if oack {
            vec![("blksize".into(), block_size.to_string())]
        } else {
            vec![]
        },
    }
}

fn body(len: usize) -> Body {
    Body::from(Bytes::from(
        (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    ))
}

fn drain(t: &mut Transfer<Body>) -> Vec<Packet> {
    std::iter::from_fn(|| t.poll_transmit())
        .map(|d| Packet::decode(&d).unwrap())
        .collect()
}

fn blocks(packets: &[Packet]) -> Vec<u16> {
    packets
        .iter()
        .map(|p| match p {
            Packet::Data { block, .. } => *block,
            other => panic!("expected DATA, got {other:?}"),
        })
        .collect()
}

fn ack(block: u16) -> Vec<u8> {
    Packet::Ack(block).encode()
}

#[test]
fn without_options_the_first_block_goes_out_at_once() {
    let now = Instant::now();
    let mut t = Transfer::start(body(1000), &negotiated(512, 1, false), 5, now).unwrap();
    assert_eq!(blocks(&drain(&mut t)), vec![1]);
    t.handle_datagram(&ack(1), now);
    assert_eq!(blocks(&drain(&mut t)), vec![2]);
    t.handle_datagram(&ack(2), now);
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.outcome(), Some(&Outcome::Completed));
    assert_eq!(t.deadline(), None);
}

#[test]
fn an_exact_multiple_ends_with_an_empty_block() {
    let now = Instant::now();
    let mut t = Transfer::start(body(512), &negotiated(512, 1, false), 5, now).unwrap();
    drain(&mut t);
    t.handle_datagram(&ack(1), now);
    let packets = drain(&mut t);
    assert_eq!(
        packets,
        vec![Packet::Data {
            block: 2,
            data: Bytes::new()
        }]
    );
}

#[test]
fn data_waits_for_the_ack_of_the_oack() {
    let now = Instant::now();
    let mut t = Transfer::start(body(3000), &negotiated(1024, 2, true), 5, now).unwrap();
    assert!(matches!(drain(&mut t)[..], [Packet::Oack(_)]));
    t.handle_datagram(&ack(1), now); // not ACK 0: ignored
    assert!(drain(&mut t).is_empty());
    t.handle_datagram(&ack(0), now);
    assert_eq!(blocks(&drain(&mut t)), vec![1, 2]);
}

#[test]
fn a_lost_oack_is_retransmitted() {
    let now = Instant::now();
    let mut t = Transfer::start(body(10), &negotiated(512, 1, true), 5, now).unwrap();
    drain(&mut t);
    t.handle_timeout(now + Duration::from_millis(999));
    assert!(drain(&mut t).is_empty(), "woken early: nothing to do");
    t.handle_timeout(now + Duration::from_secs(1));
    assert!(matches!(drain(&mut t)[..], [Packet::Oack(_)]));
}

#[test]
fn duplicate_acks_never_trigger_a_window() {
    let now = Instant::now();
    let mut t = Transfer::start(body(10_000), &negotiated(512, 4, false), 5, now).unwrap();
    assert_eq!(blocks(&drain(&mut t)), vec![1, 2, 3, 4]);
    t.handle_datagram(&ack(4), now);
    assert_eq!(blocks(&drain(&mut t)), vec![5, 6, 7, 8]);
    for old in [4, 4, 3, 1, 0, 9, 100] {
        t.handle_datagram(&ack(old), now);
        assert!(drain(&mut t).is_empty(), "ACK {old} must not send anything");
    }
}

#[test]
fn an_ack_inside_the_window_restarts_after_it() {
    let now = Instant::now();
    let mut t = Transfer::start(body(10_000), &negotiated(512, 4, false), 5, now).unwrap();
    drain(&mut t);
    t.handle_datagram(&ack(2), now);
    assert_eq!(blocks(&drain(&mut t)), vec![3, 4, 5, 6]);
    // A reordered, older ACK arriving late changes nothing.
    t.handle_datagram(&ack(1), now);
    assert!(drain(&mut t).is_empty());
}

#[test]
fn the_window_is_resent_with_backoff_then_abandoned() {
    let start = Instant::now();
    let mut t = Transfer::start(body(10_000), &negotiated(512, 2, false), 3, start).unwrap();
    drain(&mut t);
    t.handle_datagram(&ack(2), start);
    assert_eq!(blocks(&drain(&mut t)), vec![3, 4]);
    let mut now = start;
    let mut gaps = Vec::new();
    for _ in 0..3 {
        let deadline = t.deadline().unwrap();
        gaps.push(deadline - now);
        now = deadline;
        t.handle_timeout(now);
        assert_eq!(blocks(&drain(&mut t)), vec![3, 4]);
    }
    assert_eq!(
        gaps,
        vec![
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(2)
        ]
    );
    t.handle_timeout(t.deadline().unwrap());
    assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
    assert_eq!(t.deadline(), None);
    assert_eq!(t.stats().retransmissions, 3);
}

/// Every first packet a client that never answers makes us send, and for
/// how many seconds the transfer listened.
fn sent_to_a_silent_client(oack: bool, repeats_per_second: usize) -> (Vec<Packet>, u64) {
    let start = Instant::now();
    let mut t = Transfer::start(body(100_000), &negotiated(512, 1, oack), 5, start).unwrap();
    let mut sent = drain(&mut t);
    for second in 1..=30 {
        let now = start + Duration::from_secs(second);
        for _ in 0..repeats_per_second {
            t.handle_repeated_request(now);
        }
        t.handle_timeout(now);
        sent.extend(drain(&mut t));
        if t.outcome().is_some() {
            assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
            return (sent, second);
        }
    }
    panic!("still listening after 30 s");
}

#[test]
fn a_client_that_never_answers_gets_three_first_packets_from_the_timer() {
    // A forged source address sends one request: the reflection bound.
    let (data, _) = sent_to_a_silent_client(false, 0);
    assert_eq!(blocks(&data), vec![1; 1 + UNANSWERED_RESENDS as usize]);
    let (oacks, _) = sent_to_a_silent_client(true, 0);
    assert_eq!(oacks.len(), 1 + UNANSWERED_RESENDS as usize);
    assert!(oacks.iter().all(|p| matches!(p, Packet::Oack(_))));
}

#[test]
fn a_stream_of_repeats_gets_at_most_one_first_packet_per_time_out() {
    for oack in [false, true] {
        for repeats in [1, 20] {
            let (sent, listened_s) = sent_to_a_silent_client(oack, repeats);
            let free = 1 + UNANSWERED_RESENDS as usize;
            // One per second (the time-out) beyond the free resends, which
            // the first repeats spend; never more than the datagrams sent.
            assert!(
                sent.len() <= free + listened_s as usize,
                "{} sent in {listened_s} s",
                sent.len()
            );
            assert!(sent.len() <= 1 + repeats * listened_s as usize);
            assert!(sent.len() > free, "late repeats are answered");
        }
    }
}

#[test]
fn a_phone_whose_first_exchanges_were_all_lost_is_answered_at_its_next_repeat() {
    let start = Instant::now();
    let mut t = Transfer::start(body(1000), &negotiated(512, 1, false), 12, start).unwrap();
    drain(&mut t);
    // The phone repeats every 200 ms; the first answers are all lost.
    let mut now = start;
    for _ in 0..UNANSWERED_RESENDS {
        now += Duration::from_millis(200);
        t.handle_repeated_request(now);
        assert_eq!(blocks(&drain(&mut t)), vec![1]);
    }
    let listening_until = t.deadline();
    // Spent: the next repeats within a time-out are ignored...
    now += Duration::from_millis(200);
    t.handle_repeated_request(now);
    assert!(drain(&mut t).is_empty());
    // ...and the first one after it is answered, the deadline unmoved.
    now += Duration::from_millis(900);
    t.handle_repeated_request(now);
    assert_eq!(blocks(&drain(&mut t)), vec![1]);
    assert_eq!(t.deadline(), listening_until);
    t.handle_datagram(&ack(1), now + Duration::from_millis(10));
    assert_eq!(blocks(&drain(&mut t)), vec![2]);
    t.handle_datagram(&ack(2), now + Duration::from_millis(20));
    assert_eq!(t.outcome(), Some(&Outcome::Completed));
}

#[test]
fn a_client_that_answers_after_two_losses_gets_its_file() {
    let start = Instant::now();
    let mut t = Transfer::start(body(1000), &negotiated(512, 1, false), 5, start).unwrap();
    drain(&mut t);
    let first = t.deadline().unwrap();
    t.handle_timeout(first);
    t.handle_timeout(t.deadline().unwrap());
    assert_eq!(blocks(&drain(&mut t)), vec![1, 1], "two resends");
    t.handle_datagram(&ack(1), first + Duration::from_millis(2500));
    assert_eq!(blocks(&drain(&mut t)), vec![2]);
    // Once it has answered, max_retries (5) applies again.
    for _ in 0..5 {
        t.handle_timeout(t.deadline().unwrap());
        assert_eq!(blocks(&drain(&mut t)), vec![2]);
    }
    t.handle_datagram(&ack(2), first + Duration::from_secs(30));
    assert_eq!(t.outcome(), Some(&Outcome::Completed));
}

#[test]
fn a_repeated_request_resends_until_answered_and_is_new_once_all_is_out() {
    let now = Instant::now();
    // Six blocks, two per window.
    let mut t = Transfer::start(body(3000), &negotiated(512, 2, false), 5, now).unwrap();
    assert_eq!(blocks(&drain(&mut t)), vec![1, 2]);
    t.handle_repeated_request(now);
    assert_eq!(blocks(&drain(&mut t)), vec![1, 2], "resent at once");
    assert!(!t.may_be_done());
    t.handle_datagram(&ack(2), now);
    assert_eq!(blocks(&drain(&mut t)), vec![3, 4]);
    t.handle_repeated_request(now);
    assert!(drain(&mut t).is_empty(), "a late duplicate: nothing resent");
    assert!(
        !t.may_be_done(),
        "blocks 5 and 6 not sent: the client is not done"
    );
    t.handle_datagram(&ack(4), now);
    assert_eq!(blocks(&drain(&mut t)), vec![5, 6]);
    assert!(
        t.may_be_done(),
        "the last block is out: the client may be done"
    );

    let mut t = Transfer::start(body(10), &negotiated(512, 1, true), 5, now).unwrap();
    drain(&mut t);
    t.handle_repeated_request(now);
    assert!(matches!(drain(&mut t)[..], [Packet::Oack(_)]));
    t.handle_datagram(&ack(0), now);
    assert!(t.may_be_done());
}

#[test]
fn a_client_error_ends_the_transfer_silently() {
    let now = Instant::now();
    let mut t = Transfer::start(body(10), &negotiated(512, 1, true), 5, now).unwrap();
    drain(&mut t);
    t.handle_datagram(&Packet::error(ErrorCode::OptionRefused, "no"), now);
    assert_eq!(
        t.outcome(),
        Some(&Outcome::ClientError {
            code: 8,
            message: "no".into()
        })
    );
    assert_eq!(t.deadline(), None);
    t.handle_timeout(now + Duration::from_secs(60));
    assert!(drain(&mut t).is_empty());
}

#[test]
fn garbage_from_the_client_is_ignored() {
    let now = Instant::now();
    let mut t = Transfer::start(body(10), &negotiated(512, 1, false), 5, now).unwrap();
    drain(&mut t);
    for junk in [
        &b""[..],
        b"\x00",
        b"\x00\x03\x00\x01data",
        b"\x00\x01x\x00octet\x00",
        b"\xff\xff",
    ] {
        t.handle_datagram(junk, now);
    }
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.outcome(), None);
}

#[test]
fn block_numbers_roll_over_to_zero() {
    let now = Instant::now();
    let len = 65_537 * 8 + 3;
    let mut t = Transfer::start(body(len), &negotiated(8, 1, false), 5, now).unwrap();
    let mut last = Vec::new();
    let mut received = 0usize;
    loop {
        let packets = drain(&mut t);
        if packets.is_empty() {
            break;
        }
        for p in packets {
            let Packet::Data { block, data } = p else {
                panic!()
            };
            received += data.len();
            last.push(block);
            t.handle_datagram(&ack(block), now);
        }
    }
    assert_eq!(t.outcome(), Some(&Outcome::Completed));
    assert_eq!(received, len);
    assert_eq!(&last[65_533..65_538], &[65_534, 65_535, 0, 1, 2]);
}

#[test]
fn recycled_buffers_carry_nothing_over_into_later_blocks() {
    // Full blocks, then a short last one built in a recycled full-size
    // buffer: stale bytes would show as a wrong length or content.
    let now = Instant::now();
    let len = 512 * 9 + 100;
    let expected = body(len).to_bytes().unwrap();
    let mut t = Transfer::start(body(len), &negotiated(512, 4, true), 5, now).unwrap();
    let mut received = Vec::new();
    let mut acked = 0;
    let mut sent = 0;
    while t.outcome().is_none() {
        t.handle_datagram(&ack(acked), now);
        while let Some(datagram) = t.poll_transmit() {
            sent += 1;
            if let Packet::Data { block, data } = Packet::decode(&datagram).unwrap() {
                assert_eq!(block, acked + 1, "in order, nothing lost");
                received.extend_from_slice(&data);
                acked = block;
            }
            t.recycle(datagram);
        }
    }
    assert_eq!(t.outcome(), Some(&Outcome::Completed));
    assert_eq!(received, expected);
    assert_eq!(sent, 1 + 10, "the OACK and 10 DATA");
    assert!(t.spare.len() <= 4, "no more spares than a window");
}

#[test]
fn a_body_that_shrinks_ends_with_an_error_packet() {
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, &[7u8; 2000]).unwrap();
    let file = std::sync::Arc::new(file);
    let body = Body::Disk {
        file: file.clone(),
        len: 2000,
    };
    let now = Instant::now();
    let mut t = Transfer::start(body, &negotiated(512, 1, false), 5, now).unwrap();
    drain(&mut t);
    file.set_len(600).unwrap();
    t.handle_datagram(&ack(1), now);
    t.handle_datagram(&ack(2), now);
    let packets = drain(&mut t);
    assert!(matches!(
        packets.last(),
        Some(Packet::Error { code: 0, .. })
    ));
    assert!(matches!(t.outcome(), Some(Outcome::ReadFailed(_))));
}

#[test]
fn a_first_block_that_cannot_be_read_fails_before_anything_is_sent() {
    let file = tempfile::tempfile().unwrap();
    // Claims more bytes than the file has: reading block 1 fails.
    let body = Body::Disk {
        file: std::sync::Arc::new(file),
        len: 100,
    };
    assert!(Transfer::start(body, &negotiated(512, 1, true), 5, Instant::now()).is_err());
}

#[test]
fn a_late_answer_after_the_resends_are_spent_still_gets_the_file() {
    // Every acknowledgement of block 1 lost but the last, which arrives
    // after the third send: the transfer listened on without sending.
    let start = Instant::now();
    let mut t = Transfer::start(body(1000), &negotiated(512, 1, false), 5, start).unwrap();
    drain(&mut t);
    let mut now = start;
    for _ in 0..3 {
        now = t.deadline().unwrap();
        t.handle_timeout(now);
    }
    assert_eq!(
        blocks(&drain(&mut t)),
        vec![1, 1],
        "two resends, then silence"
    );
    assert!(t.outcome().is_none(), "still listening");
    t.handle_datagram(&ack(1), now + Duration::from_millis(100));
    assert_eq!(blocks(&drain(&mut t)), vec![2]);
}

/// A body that counts its reads.
struct Counted {
    bytes: Vec<u8>,
    reads: std::cell::Cell<usize>,
}

impl BlockSource for Counted {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.reads.set(self.reads.get() + 1);
        let at = offset as usize;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
        Ok(())
    }

    fn reads_in_place(&self) -> bool {
        true
    }
}

#[test]
fn a_window_of_blocks_is_read_in_one_call_and_sent_intact() {
    let now = Instant::now();
    let bytes: Vec<u8> = (0..5000).map(|i| (i % 251) as u8).collect();
    let counted = Counted {
        bytes: bytes.clone(),
        reads: Default::default(),
    };
    let mut t = Transfer::start(counted, &negotiated(512, 4, true), 5, now).unwrap();
    let mut received = Vec::new();
    let mut acked = 0u16;
    assert!(matches!(
        Packet::decode(&t.poll_transmit().unwrap()),
        Ok(Packet::Oack(_))
    ));
    let reads_at_start = t.body.reads.get();
    t.handle_datagram(&ack(0), now);
    let mut windows = 0;
    while t.outcome().is_none() {
        let window: Vec<Vec<u8>> = std::iter::from_fn(|| t.poll_transmit()).collect();
        windows += 1;
        for datagram in &window {
            let Packet::Data { block, data } = Packet::decode(datagram).unwrap() else {
                panic!("expected DATA");
            };
            assert_eq!(block, acked + 1);
            received.extend_from_slice(&data);
            acked = block;
        }
        t.handle_datagram(&ack(acked), now);
    }
    assert_eq!(received, bytes);
    // Windows after the first read all their blocks in one call; the first
    // read blocks 2–4 in one (block 1 was read at the start).
    assert_eq!(t.body.reads.get() - reads_at_start, windows);
}

#[test]
fn a_resent_first_block_carries_the_bytes_of_the_first() {
    // Block 1 is read up front and handed out by its first send: every
    // resend reads it again, and must send the very same bytes.
    for window in [1, 4] {
        let now = Instant::now();
        let mut t = Transfer::start(body(3000), &negotiated(512, window, false), 5, now).unwrap();
        let first = drain(&mut t);
        let later = t.deadline().unwrap();
        t.handle_timeout(later);
        let resent = drain(&mut t);
        assert_eq!(blocks(&first), blocks(&resent), "window {window}");
        assert_eq!(first, resent, "window {window}");
        t.handle_datagram(&ack(1), later);
        let Some(Packet::Data { block: 2, .. }) = drain(&mut t).first().cloned() else {
            panic!("window {window}: block 2 did not follow");
        };
    }
}
