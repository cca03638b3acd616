//! Splitting datagrams into messages, on hand-made bytes: no kernel, no root.

use netlink_packet_core::{
    NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_MULTIPART as NLM_F_MULTI,
};

use crate::error::Failure;
use crate::frame::{frames, Body, Frame};
use crate::IpNet;

const RTM_NEWLINK: u16 = 16;

/// One netlink message, padded to 4 bytes.
fn message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(&flags.to_ne_bytes());
    bytes.extend_from_slice(&seq.to_ne_bytes());
    bytes.extend_from_slice(&0u32.to_ne_bytes());
    bytes.extend_from_slice(payload);
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    bytes
}

/// An NLMSGERR_ATTR_MSG attribute.
fn extack_message(text: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(4 + text.len() as u16 + 1).to_ne_bytes());
    bytes.extend_from_slice(&1u16.to_ne_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    bytes
}

fn collect(datagram: &[u8]) -> Vec<Result<Frame<'_>, String>> {
    frames(datagram)
        .map(|frame| {
            frame.map_err(|failure| match failure {
                Failure::Decode(reason) => reason,
                other => panic!("not a decode failure: {other:?}"),
            })
        })
        .collect()
}

#[test]
fn frames_splits_a_datagram_of_several_messages() {
    let link = message(RTM_NEWLINK, NLM_F_MULTI, 7, &[1, 2, 3, 4, 5]);
    let done = message(NLMSG_DONE, NLM_F_MULTI, 7, &0i32.to_ne_bytes());
    let datagram = [link.clone(), done].concat();

    let frames = collect(&datagram);

    let link_body = Body::Message(&link[..21]);
    assert_eq!(
        frames,
        vec![
            Ok(Frame {
                seq: 7,
                flags: NLM_F_MULTI,
                body: link_body
            }),
            Ok(Frame {
                seq: 7,
                flags: NLM_F_MULTI,
                body: Body::Done
            }),
        ]
    );
}

#[test]
fn frames_reads_an_ack() {
    let ack = message(
        NLMSG_ERROR,
        NLM_F_CAPPED,
        3,
        &[0i32.to_ne_bytes().to_vec(), vec![0; 16]].concat(),
    );

    let frames = collect(&ack);

    assert_eq!(
        frames,
        vec![Ok(Frame {
            seq: 3,
            flags: NLM_F_CAPPED,
            body: Body::Ack
        })]
    );
}

#[test]
fn frames_reads_errno_and_message_of_a_capped_nlmsg_error() {
    let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
    let payload = [
        (-17i32).to_ne_bytes().to_vec(),
        vec![0; 16],
        extack_message("Address already assigned"),
    ]
    .concat();

    let datagram = message(NLMSG_ERROR, flags, 3, &payload);

    let frames = collect(&datagram);

    let body = Body::Error {
        errno: 17,
        message: Some("Address already assigned".to_string()),
    };
    assert_eq!(
        frames,
        vec![Ok(Frame {
            seq: 3,
            flags,
            body
        })]
    );
}

#[test]
fn frames_skips_the_echoed_request_of_an_uncapped_nlmsg_error() {
    let request = message(RTM_NEWLINK, 5, 3, &[9; 6]);
    let payload = [
        (-22i32).to_ne_bytes().to_vec(),
        request,
        extack_message("bad"),
    ]
    .concat();

    let datagram = message(NLMSG_ERROR, NLM_F_ACK_TLVS, 3, &payload);

    let frames = collect(&datagram);

    let body = Body::Error {
        errno: 22,
        message: Some("bad".to_string()),
    };
    assert_eq!(
        frames,
        vec![Ok(Frame {
            seq: 3,
            flags: NLM_F_ACK_TLVS,
            body
        })]
    );
}

#[test]
fn frames_reads_the_errno_of_a_failed_dump() {
    let done = message(NLMSG_DONE, NLM_F_MULTI, 4, &(-4i32).to_ne_bytes());

    let frames = collect(&done);

    let body = Body::Error {
        errno: 4,
        message: None,
    };
    assert_eq!(
        frames,
        vec![Ok(Frame {
            seq: 4,
            flags: NLM_F_MULTI,
            body
        })]
    );
}

#[test]
fn frames_rejects_a_length_field_beyond_the_datagram() {
    let mut datagram = message(RTM_NEWLINK, 0, 1, &[0; 8]);
    datagram[0..4].copy_from_slice(&400u32.to_ne_bytes());

    let frames = collect(&datagram);

    assert_eq!(frames.len(), 1);
    assert!(frames[0].is_err());
}

#[test]
fn frames_rejects_an_nlmsg_error_without_its_code() {
    let datagram = message(NLMSG_ERROR, 0, 1, &[0; 2]);

    let frames = collect(&datagram);

    assert_eq!(frames, vec![Err("NLMSG_ERROR of 2 bytes".to_string())]);
}

#[test]
fn frames_rejects_trailing_bytes_too_short_for_a_header() {
    let datagram = [message(NLMSG_DONE, 0, 1, &[0; 4]), vec![1; 8]].concat();

    let frames = collect(&datagram);

    assert_eq!(frames.len(), 2);
    assert!(frames[1].is_err());
}

#[test]
fn frames_never_panics_on_random_bytes() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 96) as usize;
        let mut datagram: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len >= 6 {
            // Plausible lengths and types make the parser go deeper.
            datagram[0..4].copy_from_slice(&((next() % 100) as u32).to_ne_bytes());
            datagram[4..6].copy_from_slice(&((next() % 4) as u16).to_ne_bytes());
        }

        let count = frames(&datagram).count();

        assert!(count <= datagram.len() / 16 + 1);
    }
}

#[test]
fn kernel_error_message_says_what_was_being_done() {
    let failure = Failure::Kernel {
        errno: libc::EEXIST,
        message: None,
    };

    let error = failure.context("cannot add 10.0.0.2/24 to link 3".to_string());

    assert_eq!(
        error.to_string(),
        "cannot add 10.0.0.2/24 to link 3: File exists (os error 17)"
    );
}

#[test]
fn kernel_error_message_ends_with_the_kernels_explanation() {
    let failure = Failure::Kernel {
        errno: libc::ENETUNREACH,
        message: Some("Nexthop has invalid gateway".into()),
    };

    let error =
        failure.context("cannot add route default via 192.0.2.1 through link 3".to_string());

    assert_eq!(
        error.to_string(),
        "cannot add route default via 192.0.2.1 through link 3: \
         Network is unreachable (os error 101) (Nexthop has invalid gateway)"
    );
}

#[test]
fn ip_net_displays_as_address_slash_prefix() {
    let net = IpNet {
        addr: "2001:db8::2".parse().unwrap(),
        prefix: 64,
    };

    assert_eq!(net.to_string(), "2001:db8::2/64");
}
