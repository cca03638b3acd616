//! The VM as a handle, on this machine's /dev/kvm, with the `spin` test guest (every vCPU spins
//! in guest code and OUTs to an unclaimed port now and then, so its I/O exit count is its
//! progress): pause freezes progress and resume brings it back, many times over; pause parks 64
//! spinning vCPUs and stop ends 1, 8, 64 and 254 (the most the machine has) quickly (the measured times are printed); stop works
//! on a paused VM; two VMs run side by side in one process; the guest's own stop reason comes back
//! through `wait`.
//!
//! The tests take turns (one lock): each one keeps the host's cores busy with spinning vCPUs, and
//! the timings they print mean more without a neighbour.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use test_skip::skip_if;
use vmm::{
    ConsoleConfig, RunningVm, StopReason, StopSignal, Timeline, Vm, VmConfig, VmHandle, VmState,
};

/// The bound the stop and pause tests assert; the target is 100 ms, this leaves room for a busy
/// host (2 cores shared with builds).
const QUICK: Duration = Duration::from_millis(500);
/// How long the vCPUs of a fresh VM may take to all show progress (64 of them on 2 cores).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why these tests cannot run here, if they cannot.
fn kvm_unusable() -> Option<String> {
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    kvm.err()
        .map(|e| format!("/dev/kvm is not usable here ({e})"))
}

/// Tiny test guest `name`: in `$VMCTL_TEST_GUESTS`, else in `<repo>/build/tests/guests`, built
/// there by resources/testguests/build.sh (cheap when up to date).
fn guest(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("VMCTL_TEST_GUESTS") {
            return dir.into();
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = root.join("build/tests/guests");
        let script = root.join("resources/testguests/build.sh");
        let built = Command::new(&script).arg(&dir).output();
        assert!(
            built.as_ref().is_ok_and(|o| o.status.success()),
            "{} failed: {built:?}",
            script.display()
        );
        dir
    });
    let path = dir.join(name);
    assert!(path.is_file(), "test guest {} is missing", path.display());
    path
}

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn config(kernel: &str, cmdline: &str, vcpus: u32) -> VmConfig {
    VmConfig {
        kernel: guest(kernel),
        // as the runtime boots its containers: the guests' pages mapped from their files
        share_kernel_pages: true,
        initrd: None,
        cmdline: cmdline.into(),
        vcpus,
        memory_mib: 32,
        console: ConsoleConfig {
            output: Box::new(std::io::sink()),
            input: None,
            escape: None,
        },
        devices: Vec::new(),
        timeline: Arc::new(Timeline::new(Instant::now(), false)),
        stop: Arc::new(StopSignal::new().unwrap()),
    }
}

/// Port writes (progress) of each vCPU so far.
fn progress(handle: &VmHandle) -> Vec<u64> {
    handle.stats().vcpu.iter().map(|v| v.io_exits).collect()
}

/// Waits until every vCPU of `handle`'s VM has made progress since `since`.
fn wait_progress(handle: &VmHandle, since: &[u64], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let now = progress(handle);
        if now.iter().zip(since).all(|(n, s)| n > s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "vCPUs made no progress within {timeout:?}: before {since:?}, now {now:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running `spin` VM whose vCPUs have all started spinning.
fn spinning(vcpus: u32) -> RunningVm {
    let vm = Vm::build(config("spin", "", vcpus))
        .unwrap()
        .start()
        .unwrap();
    wait_progress(&vm.handle(), &vec![0; vcpus as usize], START_TIMEOUT);
    vm
}

fn check_stop_is_quick(vcpus: u32) {
    let vm = spinning(vcpus);
    let handle = vm.handle();

    let start = Instant::now();
    handle.stop(StopReason::UserQuit);
    let reason = vm.wait().unwrap();
    let took = start.elapsed();

    println!(
        "stop of {vcpus} spinning vCPUs: {:.3} ms",
        took.as_secs_f64() * 1e3
    );
    assert_eq!(reason, StopReason::UserQuit);
    assert_eq!(handle.state(), VmState::Stopped);
    assert!(
        took < QUICK,
        "stopping {vcpus} spinning vCPUs took {took:?} (bound {QUICK:?})"
    );
}

#[test]
fn stop_of_1_spinning_vcpu_is_quick() {
    skip_if!(kvm_unusable());
    let _turn = one_at_a_time();
    check_stop_is_quick(1);
}

#[test]
fn stop_of_8_spinning_vcpus_is_quick() {
    skip_if!(kvm_unusable());
    let _turn = one_at_a_time();
    check_stop_is_quick(8);
}

#[test]
fn stop_of_64_spinning_vcpus_is_quick() {
    skip_if!(kvm_unusable());
    let _turn = one_at_a_time();
    check_stop_is_quick(64);
}

#[test]
fn stop_of_254_spinning_vcpus_is_quick() {
    skip_if!(kvm_unusable());
    let _turn = one_at_a_time();
    check_stop_is_quick(vmm::MAX_VCPUS);
}

#[test]
fn pause_freezes_the_guest_and_resume_lets_it_go_on() {
    skip_if!(kvm_unusable());
    let _turn = one_at_a_time();
    let vm = spinning(4);
    let handle = vm.handle();

    let start = Instant::now();
    handle.pause().unwrap();
    let took = start.elapsed();
    let frozen = progress(&handle);
    std::thread::sleep(Duration::from_millis(200));
    let later = progress(&handle);
    let paused_state = handle.state();
    handle.resume().unwrap();
    let resumed_state = handle.state();
    wait_progress(&handle, &later, Duration::from_secs(10));
    handle.stop(StopReason::ExitStatus(9));
    let reason = vm.wait().unwrap();

    println!(
        "pause of 4 spinning vCPUs: {:.3} ms",
        took.as_secs_f64() * 1e3
    );
    assert_eq!(frozen, later, "the guest made progress while paused");
    assert_eq!(paused_state, VmState::Paused);
    assert_eq!(resumed_state, VmState::Running);
    assert_eq!(reason, StopReason::ExitStatus(9));
    assert!(took < QUICK, "pausing took {took:?} (bound {QUICK:?})");
}

#[test]
fn pause_of_64_running_vcpus_is_quick() {
    skip_if!(kvm_unusable());
    let _turn = one_at_a_time();
    let vm = spinning(64);
    let handle = vm.handle();

    let start = Instant::now();
    handle.pause().unwrap();
    let took = start.elapsed();
    let frozen = progress(&handle);
    std::thread::sleep(Duration::from_millis(100));
    let later = progress(&handle);
    handle.stop(StopReason::UserQuit);
    vm.wait().unwrap();

    println!(
        "pause of 64 spinning vCPUs: {:.3} ms",
        took.as_secs_f64() * 1e3
    );
    assert_eq!(frozen, later, "the guest made progress while paused");
    assert!(
        took < QUICK,
        "pausing 64 vCPUs took {took:?} (bound {QUICK:?})"
    );
}

#[test]
fn pause_and_resume_many_times() {
    skip_if!(kvm_unusable());
    let _turn = one_at_a_time();
    const ROUNDS: usize = 100;
    let vm = spinning(4);
    let handle = vm.handle();
    let mut pauses = Vec::with_capacity(ROUNDS);

    for round in 0..ROUNDS {
        // Every vCPU back in the guest first, so each pause kicks running vCPUs (not ones still
        // in the previous park).
        let before = progress(&handle);
        wait_progress(&handle, &before, Duration::from_secs(10));
        let start = Instant::now();
        handle.pause().unwrap();
        pauses.push(start.elapsed());
        let frozen = progress(&handle);
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(
            progress(&handle),
            frozen,
            "progress while paused (round {round})"
        );
        handle.resume().unwrap();
    }
    handle.stop(StopReason::UserQuit);
    vm.wait().unwrap();

    pauses.sort();
    let (median, max) = (pauses[ROUNDS / 2], pauses[ROUNDS - 1]);
    println!(
        "{ROUNDS} pauses of 4 running vCPUs: median {:.3} ms, max {:.3} ms",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    assert!(
        max < QUICK,
        "the slowest pause took {max:?} (bound {QUICK:?})"
    );
}

#[test]
fn stop_while_paused_ends_the_vm() {
    skip_if!(kvm_unusable());
    let _turn = one_at_a_time();
    let vm = spinning(8);
    let handle = vm.handle();
    handle.pause().unwrap();

    let start = Instant::now();
    handle.stop(StopReason::Reset);
    let reason = vm.wait().unwrap();
    let took = start.elapsed();

    println!("stop of 8 paused vCPUs: {:.3} ms", took.as_secs_f64() * 1e3);
    assert_eq!(reason, StopReason::Reset);
    assert_eq!(handle.state(), VmState::Stopped);
    assert!(handle.pause().is_err());
    assert!(handle.resume().is_err());
    assert!(took < QUICK, "stopping a paused VM took {took:?}");
}

#[test]
fn two_vms_in_one_process_are_controlled_apart() {
    skip_if!(kvm_unusable());
    let _turn = one_at_a_time();
    let a = spinning(2);
    let b = spinning(2);
    let (ha, hb) = (a.handle(), b.handle());

    ha.pause().unwrap();
    let a_frozen = progress(&ha);
    let b_before = progress(&hb);
    wait_progress(&hb, &b_before, Duration::from_secs(10));
    let a_while_b_ran = progress(&ha);
    ha.resume().unwrap();
    hb.stop(StopReason::ExitStatus(2));
    let b_reason = b.wait().unwrap();
    let a_before = progress(&ha);
    wait_progress(&ha, &a_before, Duration::from_secs(10));
    let a_state = ha.state();
    ha.stop(StopReason::ExitStatus(1));
    let a_reason = a.wait().unwrap();

    assert_eq!(a_frozen, a_while_b_ran, "pausing A must freeze A only");
    assert_eq!(b_reason, StopReason::ExitStatus(2));
    assert_eq!(a_state, VmState::Running, "stopping B must leave A running");
    assert_eq!(a_reason, StopReason::ExitStatus(1));
}

#[test]
fn the_guests_own_stop_comes_back_through_wait() {
    skip_if!(kvm_unusable());
    let _turn = one_at_a_time();
    let vm = Vm::build(config("exit", "status=5", 1))
        .unwrap()
        .start()
        .unwrap();
    let handle = vm.handle();

    let reason = vm.wait().unwrap();

    assert_eq!(reason, StopReason::ExitStatus(5));
    assert_eq!(handle.state(), VmState::Stopped);
    assert_eq!(handle.stats().vcpus, 1);
    assert_eq!(handle.stats().memory_mib, 32);
    assert!(
        handle.stats().vcpu[0].io_exits > 0,
        "the guest printed and reported"
    );
}

#[test]
fn dropping_a_running_vm_stops_it() {
    skip_if!(kvm_unusable());
    let _turn = one_at_a_time();
    let vm = spinning(2);
    let handle = vm.handle();

    drop(vm);

    assert_eq!(handle.state(), VmState::Stopped);
}
