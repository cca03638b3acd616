//! Traffic control: the ingress qdisc and a filter redirecting all ingress to another link.

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionMirror, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterMatchAll, TcFilterMatchAllOption, TcFilterU32,
    TcFilterU32Option, TcHandle, TcMessage, TcMirror, TcMirrorActionType, TcOption, TcU32Key,
    TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::{Error, Netlink};

/// The ingress qdisc's handle, `ffff:`, the parent of its filters.
pub(crate) const INGRESS_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};

impl Netlink {
    /// Adds an ingress qdisc to link `index` (`tc qdisc add dev X ingress`).
    pub fn add_ingress_qdisc(&mut self, index: u32) -> Result<(), Error> {
        let what = || format!("cannot add an ingress qdisc to link {index}");
        let message = ingress_qdisc(index).map_err(|reason| Error::Invalid {
            what: what(),
            reason,
        })?;
        let request = RouteNetlinkMessage::NewQueueDiscipline(message);
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.socket
            .request(request, flags)
            .map_err(|f| f.context(what()))
    }

    /// Deletes the ingress qdisc of link `index`, and so its filters; a link without one is fine.
    pub fn delete_ingress_qdisc(&mut self, index: u32) -> Result<(), Error> {
        let what = || format!("cannot delete the ingress qdisc of link {index}");
        let message = ingress_qdisc(index).map_err(|reason| Error::Invalid {
            what: what(),
            reason,
        })?;
        let request = RouteNetlinkMessage::DelQueueDiscipline(message);
        match self.socket.request(request, 0) {
            // The kernel's answers when the link has no ingress qdisc.
            Err(failure) if matches!(failure.errno(), Some(libc::ENOENT | libc::EINVAL)) => Ok(()),
            result => result.map_err(|f| f.context(what())),
        }
    }

    /// `tc filter add dev FROM parent ffff: protocol all matchall action mirred egress redirect dev TO`
    ///
    /// Link `from` needs an ingress qdisc. On kernels built without the matchall classifier, a
    /// u32 filter whose one key matches every packet takes its place.
    pub fn redirect_ingress(&mut self, from: u32, to: u32) -> Result<(), Error> {
        let what = || format!("cannot redirect the ingress of link {from} to link {to}");
        let filter = |kind| {
            redirect_filter(kind, from, to).map_err(|reason| Error::Invalid {
                what: what(),
                reason,
            })
        };
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        let request = RouteNetlinkMessage::NewTrafficFilter(filter(Classifier::MatchAll)?);
        match self.socket.request(request, flags) {
            // ENOENT: "TC classifier not found" (a missing action would fail the u32 filter too).
            Err(failure) if failure.errno() == Some(libc::ENOENT) => {
                let request = RouteNetlinkMessage::NewTrafficFilter(filter(Classifier::U32)?);
                self.socket
                    .request(request, flags)
                    .map_err(|f| f.context(what()))
            }
            result => result.map_err(|f| f.context(what())),
        }
    }
}

/// The ingress qdisc of link `index`, to add or delete.
fn ingress_qdisc(index: u32) -> Result<TcMessage, String> {
    let mut message = TcMessage::with_index(tc_index(index)?);
    message.header.parent = TcHandle::INGRESS;
    message.header.handle = INGRESS_HANDLE;
    message
        .attributes
        .push(TcAttribute::Kind("ingress".to_string()));
    Ok(message)
}

#[derive(Clone, Copy)]
enum Classifier {
    MatchAll,
    U32,
}

/// A filter on the ingress qdisc of `from` matching every packet of any protocol, with a mirred
/// action redirecting it to the egress of `to`.
fn redirect_filter(classifier: Classifier, from: u32, to: u32) -> Result<TcMessage, String> {
    let mut message = TcMessage::with_index(tc_index(from)?);
    message.header.parent = INGRESS_HANDLE;
    // TC_H_MAKE(priority << 16, protocol): priority 0 lets the kernel choose one; the protocol
    // is in network byte order.
    message.header.info = u32::from((libc::ETH_P_ALL as u16).to_be());
    let actions = vec![mirred_action(to, TcMirrorActionType::EgressRedir)];
    let (kind, options) = match classifier {
        Classifier::MatchAll => (
            TcFilterMatchAll::KIND,
            vec![TcOption::MatchAll(TcFilterMatchAllOption::Action(actions))],
        ),
        Classifier::U32 => {
            let mut selector = TcU32Selector::default();
            selector.flags = TcU32SelectorFlags::Terminal;
            selector.nkeys = 1;
            // Mask 0 at offset 0: every packet matches.
            selector.keys = vec![TcU32Key::default()];
            // In the order tc(8) sends them.
            let options = vec![
                TcFilterU32Option::Action(actions),
                TcFilterU32Option::Selector(selector),
            ];
            (
                TcFilterU32::KIND,
                options.into_iter().map(TcOption::U32).collect(),
            )
        }
    };
    message.attributes.push(TcAttribute::Kind(kind.to_string()));
    message.attributes.push(TcAttribute::Options(options));
    Ok(message)
}

/// `action mirred egress redirect dev TO`: the packet leaves through `to`, and is stolen; or
/// `action mirred egress mirror dev TO`: a copy leaves through `to`, and the packet goes on.
pub(crate) fn mirred_action(to: u32, how: TcMirrorActionType) -> TcAction {
    let mut mirror = TcMirror::default();
    mirror.generic.action = if how == TcMirrorActionType::EgressMirror {
        TcActionType::Pipe
    } else {
        TcActionType::Stolen
    };
    mirror.eaction = how;
    mirror.ifindex = to;
    let mut action = TcAction::default();
    action
        .attributes
        .push(TcActionAttribute::Kind(TcActionMirror::KIND.to_string()));
    action
        .attributes
        .push(TcActionAttribute::Options(vec![TcActionOption::Mirror(
            TcActionMirrorOption::Parms(mirror),
        )]));
    action
}

/// tc messages carry the interface index as a C int.
pub(crate) fn tc_index(index: u32) -> Result<i32, String> {
    i32::try_from(index).map_err(|_| format!("link index {index} is out of range"))
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable;

    use super::{redirect_filter, Classifier};

    /// The tcmsg and attributes of the RTM_NEWTFILTER that tc(8) (iproute2 6.1) sends for
    /// `tc filter add dev va parent ffff: protocol all CLASSIFIER action mirred egress redirect
    /// dev vb`, va being link 3 and vb link 2, as strace showed them.
    fn sent_by_tc(kind: &[u8], options: &[u8]) -> Vec<u8> {
        let mut bytes = vec![
            0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 3, 0, 0,
        ];
        bytes.extend_from_slice(kind);
        bytes.extend_from_slice(options);
        bytes
    }

    /// TCA_ACT_TAB 1: TCA_ACT_KIND "mirred", TCA_ACT_OPTIONS (nested): TCA_MIRRED_PARMS
    /// (action TC_ACT_STOLEN, eaction TCA_EGRESS_REDIR, ifindex 2).
    const MIRRED: [u8; 52] = [
        0x34, 0, 1, 0, 0x0b, 0, 1, 0, b'm', b'i', b'r', b'r', b'e', b'd', 0, 0, 0x24, 0, 2, 0x80,
        0x20, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2,
        0, 0, 0,
    ];

    fn emitted(classifier: Classifier) -> Vec<u8> {
        let message = redirect_filter(classifier, 3, 2).unwrap();
        let mut bytes = vec![0; message.buffer_len()];
        message.emit(&mut bytes);
        bytes
    }

    #[test]
    fn matchall_redirect_is_what_tc_sends() {
        let kind = b"\x0d\x00\x01\x00matchall\x00\x00\x00\x00";
        let options = [&[60, 0, 2, 0, 56, 0, 2, 0][..], &MIRRED].concat();

        let bytes = emitted(Classifier::MatchAll);

        assert_eq!(bytes, sent_by_tc(kind, &options));
    }

    #[test]
    fn u32_redirect_is_what_tc_sends() {
        let kind = b"\x08\x00\x01\x00u32\x00";
        let mut selector = vec![36, 0, 5, 0, 1, 0, 1];
        selector.resize(36, 0);
        let options = [&[96, 0, 2, 0, 56, 0, 7, 0][..], &MIRRED, &selector].concat();

        let bytes = emitted(Classifier::U32);

        assert_eq!(bytes, sent_by_tc(kind, &options));
    }
}
