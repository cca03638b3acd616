//! Parsing the device flags of `vmctl boot` into the VMM's device list.

use std::path::PathBuf;

use vmm::{BlockConfig, DeviceConfig, NetConfig, PmemConfig, VsockConfig};

/// `PATH[,ro][,serial=ID]`
pub fn parse_disk(arg: &str) -> Result<BlockConfig, String> {
    let (path, opts) = split_path(arg)?;
    let mut config = BlockConfig {
        path,
        read_only: false,
        serial: String::new(),
    };
    for opt in opts {
        match opt.split_once('=') {
            None if opt == "ro" => config.read_only = true,
            Some(("serial", s)) if s.len() <= 20 => config.serial = s.to_owned(),
            Some(("serial", _)) => return Err("serial is at most 20 bytes".into()),
            _ => {
                return Err(format!(
                    "unknown disk option '{opt}' (known: ro, serial=ID)"
                ))
            }
        }
    }
    Ok(config)
}

/// `PATH[,ro]`
pub fn parse_pmem(arg: &str) -> Result<PmemConfig, String> {
    let (path, opts) = split_path(arg)?;
    let mut read_only = false;
    for opt in opts {
        match opt {
            "ro" => read_only = true,
            _ => return Err(format!("unknown pmem option '{opt}' (known: ro)")),
        }
    }
    Ok(PmemConfig { path, read_only })
}

/// `tap=NAME[,mac=MAC]`
pub fn parse_net(arg: &str) -> Result<NetConfig, String> {
    let mut tap = None;
    let mut mac = None;
    for opt in arg.split(',') {
        match opt.split_once('=') {
            Some(("tap", name)) if !name.is_empty() && name.len() < 16 => {
                tap = Some(name.to_owned())
            }
            Some(("tap", _)) => return Err("tap name must be 1 to 15 bytes".into()),
            Some(("mac", m)) => mac = Some(parse_mac(m)?),
            _ => {
                return Err(format!(
                    "unknown net option '{opt}' (known: tap=NAME, mac=MAC)"
                ))
            }
        }
    }
    let tap = tap.ok_or("tap=NAME is required")?;
    Ok(NetConfig { tap, mac })
}

/// `cid=N,socket=PATH`
pub fn parse_vsock(arg: &str) -> Result<VsockConfig, String> {
    let mut cid = None;
    let mut socket = None;
    for opt in arg.split(',') {
        match opt.split_once('=') {
            Some(("cid", n)) => {
                let n: u64 = n
                    .parse()
                    .map_err(|_| format!("cid '{n}' is not a number"))?;
                // 0-2 are reserved (hypervisor, loopback, host); u32::MAX is VMADDR_CID_ANY.
                if !(3..u64::from(u32::MAX)).contains(&n) {
                    return Err(format!("cid {n} is reserved: use 3 to 4294967294"));
                }
                cid = Some(n);
            }
            Some(("socket", p)) if !p.is_empty() => socket = Some(PathBuf::from(p)),
            _ => {
                return Err(format!(
                    "unknown vsock option '{opt}' (known: cid=N, socket=PATH)"
                ))
            }
        }
    }
    Ok(VsockConfig {
        guest_cid: cid.ok_or("cid=N is required")?,
        uds_path: socket.ok_or("socket=PATH is required")?,
    })
}

fn split_path(arg: &str) -> Result<(PathBuf, std::str::Split<'_, char>), String> {
    let mut parts = arg.split(',');
    match parts.next() {
        Some(p) if !p.is_empty() => Ok((PathBuf::from(p), parts)),
        _ => Err("a file path is required".into()),
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("'{s}' is not a MAC address (like 06:00:ac:10:00:02)"))?;
    let mac: [u8; 6] = bytes
        .try_into()
        .map_err(|_| format!("'{s}' is not a MAC address (like 06:00:ac:10:00:02)"))?;
    if mac[0] & 1 != 0 {
        return Err(format!("{s} is a multicast address"));
    }
    Ok(mac)
}

/// The devices in the order the guest sees them: disks, pmem, net, vsock.
pub fn collect(
    disks: Vec<BlockConfig>,
    pmems: Vec<PmemConfig>,
    net: Option<NetConfig>,
    vsock: Option<VsockConfig>,
) -> Vec<DeviceConfig> {
    let mut devices: Vec<DeviceConfig> = Vec::new();
    for (i, mut d) in disks.into_iter().enumerate() {
        if d.serial.is_empty() {
            d.serial = format!("vmctl-disk{i}");
        }
        devices.push(DeviceConfig::Block(d));
    }
    devices.extend(pmems.into_iter().map(DeviceConfig::Pmem));
    devices.extend(net.map(DeviceConfig::Net));
    devices.extend(vsock.map(DeviceConfig::Vsock));
    devices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_options() {
        let d = parse_disk("/tmp/a.img,ro,serial=abc").unwrap();
        assert_eq!(d.path, PathBuf::from("/tmp/a.img"));
        assert!(d.read_only);
        assert_eq!(d.serial, "abc");
        assert!(parse_disk("").is_err());
        assert!(parse_disk("x,rw").is_err());
    }

    #[test]
    fn net_options() {
        let n = parse_net("tap=tap0,mac=06:00:ac:10:00:02").unwrap();
        assert_eq!(n.tap, "tap0");
        assert_eq!(n.mac, Some([6, 0, 0xac, 0x10, 0, 2]));
        assert!(parse_net("mac=06:00:ac:10:00:02").is_err());
        assert!(parse_net("tap=t,mac=01:00:00:00:00:00").is_err());
        assert!(parse_net("tap=t,mac=zz").is_err());
    }

    #[test]
    fn vsock_options() {
        let v = parse_vsock("cid=3,socket=/tmp/v.sock").unwrap();
        assert_eq!(v.guest_cid, 3);
        assert!(parse_vsock("cid=2,socket=/x").is_err());
        assert!(parse_vsock("cid=3").is_err());
    }
}
