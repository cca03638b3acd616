//! u32 filters that keep some of a redirected link's ingress for the link's own namespace:
//! packets it is waiting for itself (the answers to its own connections, the neighbours' replies
//! it needs to make them), ahead of the redirect that takes everything else. u32 rather than
//! flower: every kernel with tc has it (flower, like matchall, is missing from some).

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::tc::{
    TcAttribute, TcFilterU32, TcFilterU32Option, TcMessage, TcMirrorActionType, TcOption, TcU32Key,
    TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::tc::{mirred_action, tc_index, INGRESS_HANDLE};
use crate::{Error, Netlink};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_ICMPV6: u32 = 58;
/// The IPv6 header's length: what follows it is the upper layer when it has no extension.
const IPV6_HEADER: i32 = 40;

/// The packets a filter matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Every ARP packet.
    Arp,
    /// ICMPv6 messages of one type (136: neighbour advertisement) with no extension header.
    Icmpv6 { kind: u8 },
    /// UDP or TCP, over IPv4 (without options, unfragmented or the first fragment) or IPv6
    /// (without extension headers), from `src_port` to a port whose bits under `dst_mask` are
    /// those of `dst_port`.
    Ports {
        ipv6: bool,
        tcp: bool,
        src_port: u16,
        dst_port: u16,
        dst_mask: u16,
    },
}

impl Netlink {
    /// `tc filter add dev LINK parent ffff: prio PRIORITY protocol P u32 match ... [action
    /// mirred egress mirror dev COPY_TO]`: a packet that matches goes on to the link's own
    /// stack and skips the filters of higher numbers (a redirect); with `copy_to`, a copy of it
    /// also leaves through that link. Link `index` needs an ingress qdisc.
    pub fn keep_ingress(
        &mut self,
        index: u32,
        priority: u16,
        flow: Flow,
        copy_to: Option<u32>,
    ) -> Result<(), Error> {
        let what = || format!("cannot keep {flow:?} on link {index}");
        let message =
            keep_filter(index, priority, flow, copy_to).map_err(|reason| Error::Invalid {
                what: what(),
                reason,
            })?;
        let request = RouteNetlinkMessage::NewTrafficFilter(message);
        self.socket
            .request(request, NLM_F_CREATE | NLM_F_EXCL)
            .map_err(|f| f.context(what()))
    }
}

/// One 32-bit word of the packet, from its network header on: (offset, mask, value).
type Word = (i32, u32, u32);

fn keys(flow: Flow) -> (u16, Vec<Word>) {
    match flow {
        // Mask 0: every packet of the protocol.
        Flow::Arp => (ETH_P_ARP, vec![(0, 0, 0)]),
        Flow::Icmpv6 { kind } => (
            ETH_P_IPV6,
            vec![
                (4, 0x0000_ff00, IPPROTO_ICMPV6 << 8),
                (IPV6_HEADER, 0xff00_0000, u32::from(kind) << 24),
            ],
        ),
        Flow::Ports {
            ipv6,
            tcp,
            src_port,
            dst_port,
            dst_mask,
        } => {
            let proto = u32::from(if tcp { 6u8 } else { 17u8 });
            let ports = (
                0xffff_0000 | u32::from(dst_mask),
                (u32::from(src_port) << 16) | u32::from(dst_port & dst_mask),
            );
            if ipv6 {
                (
                    ETH_P_IPV6,
                    vec![
                        (4, 0x0000_ff00, proto << 8),
                        (IPV6_HEADER, ports.0, ports.1),
                    ],
                )
            } else {
                (
                    ETH_P_IP,
                    vec![
                        // IHL 5: the ports are at offset 20.
                        (0, 0x0f00_0000, 0x0500_0000),
                        // Fragment offset 0: the first fragment, which has them.
                        (4, 0x0000_1fff, 0),
                        (8, 0x00ff_0000, proto << 16),
                        (20, ports.0, ports.1),
                    ],
                )
            }
        }
    }
}

fn keep_filter(
    index: u32,
    priority: u16,
    flow: Flow,
    copy_to: Option<u32>,
) -> Result<TcMessage, String> {
    let mut message = TcMessage::with_index(tc_index(index)?);
    message.header.parent = INGRESS_HANDLE;
    let (protocol, words) = keys(flow);
    // TC_H_MAKE(priority << 16, protocol), the protocol in network byte order.
    message.header.info = (u32::from(priority) << 16) | u32::from(protocol.to_be());
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = words.len() as u8;
    selector.keys = words
        .into_iter()
        .map(|(off, mask, val)| {
            let mut key = TcU32Key::default();
            key.off = off;
            key.mask = mask;
            key.val = val;
            key
        })
        .collect();
    let mut options = Vec::new();
    // No action: the classification ends with TC_ACT_OK, and the packet goes on. A mirror's
    // verdict is TC_ACT_PIPE, which ends it the same way once the mirror has copied it.
    if let Some(to) = copy_to {
        options.push(TcFilterU32Option::Action(vec![mirred_action(
            to,
            TcMirrorActionType::EgressMirror,
        )]));
    }
    options.push(TcFilterU32Option::Selector(selector));
    message
        .attributes
        .push(TcAttribute::Kind(TcFilterU32::KIND.to_string()));
    message.attributes.push(TcAttribute::Options(
        options.into_iter().map(TcOption::U32).collect(),
    ));
    Ok(message)
}
