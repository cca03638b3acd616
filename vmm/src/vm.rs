//! The VM's life: built ([`Vm`]), running ([`RunningVm`], controlled through [`VmHandle`]s from any
//! thread), stopped (its owner's `wait` returns why).

use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use boot::RamLayout;
use devices::console_out::{console_out, ConsoleOut, ConsoleWriter};
use devices::serial::SerialDevice;
use devices::{StopReason, Timeline};
use event_manager::{EventManager, SubscriberOps};

use crate::config::{validate, MAX_VCPUS};
use crate::console::{ConsoleInput, StopWatcher};
use crate::control::VcpuControl;
use crate::event_loop::{EventLoop, Subscriber};
use crate::handle::VmHandle;
use crate::stats::VcpuCounters;
use crate::vcpu::Vcpu;
use crate::virtio::{AttachedDevice, VirtioSlots};
use crate::{kick, kvm, machine, Error, Result, VmConfig};

/// vCPU threads need little stack: they serve exits, nothing recursive.
const VCPU_STACK: usize = 256 << 10;

/// A VM built and ready to start: KVM VM, memory, devices, kernel loaded, vCPUs created. No guest
/// code has run yet. Dropping it releases everything.
pub struct Vm {
    handle: VmHandle,
    vcpus: Vec<Vcpu>,
    events: EventManager<Subscriber>,
    serial: Arc<Mutex<SerialDevice>>,
    console: ConsoleOut,
    console_writer: ConsoleWriter,
    timeline: Arc<Timeline>,
    virtio: VirtioSlots,
}

impl Vm {
    /// Builds the VM `config` describes.
    pub fn build(config: VmConfig) -> Result<Vm> {
        validate(&config)?;
        let kvm = kvm::open()?;
        let max = MAX_VCPUS.min(kvm.get_max_vcpus() as u32);
        if config.vcpus > max {
            return Err(Error::VcpuCount {
                requested: config.vcpus,
                max,
            });
        }
        let VmConfig {
            kernel,
            share_kernel_pages,
            initrd,
            mut cmdline,
            vcpus,
            memory_mib,
            console,
            devices,
            timeline,
            stop,
        } = config;
        let layout = RamLayout::new(memory_mib)?;
        let mem = layout.allocate()?;
        let vm = Arc::new(machine::create_vm(&kvm, &mem)?);
        let (console_out, console_writer) = console_out(console.output);
        let legacy = machine::legacy_devices(&vm, vcpus, console_out.clone(), &stop, &timeline)?;

        let mut events = EventManager::<Subscriber>::new()
            .map_err(|e| Error::setup("the event loop")(std::io::Error::other(format!("{e:?}"))))?;
        events.add_subscriber(Arc::new(Mutex::new(StopWatcher { stop: stop.clone() })));
        if let Some(fd) = console.input {
            events.add_subscriber(Arc::new(Mutex::new(ConsoleInput::new(
                fd,
                console.escape,
                legacy.serial.clone(),
                legacy.input_drained,
                stop.clone(),
            ))));
        }

        let mmio = Arc::new(RwLock::new(legacy.mmio));
        let mut virtio = VirtioSlots::new(
            vm.clone(),
            mem.clone(),
            mmio.clone(),
            layout.ranges().len() as u32,
            layout.end(),
        );
        for device in &devices {
            events.add_subscriber(virtio.attach(device)?);
        }
        for device in virtio.attached() {
            cmdline.push(' ');
            cmdline.push_str(&device.cmdline_entry());
        }
        if !devices.is_empty() {
            let n = devices.len();
            timeline.record(|| format!("devices ready ({n} virtio)"));
        }
        let entry = machine::load_guest(
            &kernel,
            share_kernel_pages,
            initrd.as_deref(),
            &cmdline,
            vcpus,
            &layout,
            &mem,
        )?;

        kick::install()?;
        let control = Arc::new(VcpuControl::new(vcpus as usize));
        let base_cpuid = Arc::new(boot::cpuid::supported_with_emulated(&kvm)?);
        let filter = crate::seccomp::vcpu_filter()
            .map_err(|e| Error::setup("the vCPU seccomp filter")(std::io::Error::other(e)))?;
        let filter = Arc::new(filter);
        let host_is_kvm_pvm = kvm::is_kvm_pvm();
        let pio = Arc::new(legacy.pio);
        let mut vcpu_list = Vec::with_capacity(vcpus as usize);
        let mut counters = Vec::with_capacity(vcpus as usize);
        for index in 0..vcpus as u8 {
            let fd = vm
                .create_vcpu(u64::from(index))
                .map_err(Error::kvm("create a vCPU"))?;
            let mine = Arc::new(VcpuCounters::default());
            counters.push(mine.clone());
            vcpu_list.push(Vcpu {
                index,
                count: vcpus as u8,
                fd,
                base_cpuid: base_cpuid.clone(),
                boot: (index == 0).then_some(entry),
                pio: pio.clone(),
                mmio: mmio.clone(),
                mem: mem.clone(),
                stop: stop.clone(),
                control: control.clone(),
                counters: mine,
                timeline: timeline.clone(),
                seccomp: filter.clone(),
                host_is_kvm_pvm,
            });
        }
        timeline.record(|| "vmm ready".into());
        Ok(Vm {
            handle: VmHandle::new(stop, control, counters, memory_mib, console_out.clone()),
            vcpus: vcpu_list,
            events,
            serial: legacy.serial,
            console: console_out,
            console_writer,
            timeline,
            virtio,
        })
    }

    /// The virtio devices attached, in the order of their MMIO windows.
    pub fn devices(&self) -> &[AttachedDevice] {
        self.virtio.attached()
    }

    /// Starts the console's writer and the event-loop thread, then one thread per vCPU: the guest
    /// runs from here on.
    pub fn start(self) -> Result<RunningVm> {
        let Vm {
            handle,
            vcpus,
            events,
            serial,
            console,
            console_writer,
            timeline,
            virtio,
        } = self;
        let console_thread = std::thread::Builder::new()
            .name("vmm-console".into())
            .spawn(move || console_writer.run())
            .map_err(|source| Error::Thread {
                what: "the console writer",
                source,
            })?;
        let event_loop = EventLoop {
            events,
            stop: handle.stop_signal().clone(),
            control: handle.control().clone(),
            serial,
            console,
            timeline,
        };
        let event_loop = std::thread::Builder::new()
            .name("vmm-events".into())
            .spawn(move || event_loop.run());
        let event_loop = match event_loop {
            Ok(t) => t,
            Err(source) => {
                // Dropping the event loop's parts closed nothing the writer waits on: tell it.
                handle.console().finish(std::time::Duration::ZERO);
                return Err(Error::Thread {
                    what: "the event-loop",
                    source,
                });
            }
        };
        let mut running = RunningVm {
            handle,
            event_loop: Some(event_loop),
            console_thread: Some(console_thread),
            vcpus: Vec::with_capacity(vcpus.len()),
            virtio,
        };
        let mut failure = None;
        for vcpu in vcpus {
            let index = usize::from(vcpu.index);
            if failure.is_some() {
                running.handle.control().abandon(index);
                continue;
            }
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .stack_size(VCPU_STACK)
                .spawn(move || vcpu.run());
            match spawned {
                Ok(t) => running.vcpus.push(t),
                Err(e) => {
                    running.handle.control().abandon(index);
                    failure = Some(e);
                }
            }
        }
        match failure {
            None => Ok(running),
            Some(source) => {
                running.handle.stop(StopReason::Failed(format!(
                    "cannot start a vCPU thread: {source}"
                )));
                running.join();
                Err(Error::Thread {
                    what: "a vCPU",
                    source,
                })
            }
        }
    }
}

/// A VM whose guest runs. Its owner waits for its end; [`VmHandle`]s control it from anywhere.
/// Dropping it without `wait` stops the VM (as the user quitting) and waits for it.
pub struct RunningVm {
    handle: VmHandle,
    event_loop: Option<JoinHandle<StopReason>>,
    vcpus: Vec<JoinHandle<()>>,
    /// Joined only if it has finished: one blocked on a reader that stalled is left to end alone.
    console_thread: Option<JoinHandle<()>>,
    /// The attached devices and where the next one goes; dropped only after every thread is
    /// joined (pmem mappings are guest memory).
    virtio: VirtioSlots,
}

impl RunningVm {
    pub fn handle(&self) -> VmHandle {
        self.handle.clone()
    }

    /// The virtio devices attached, in the order of their MMIO windows.
    pub fn devices(&self) -> &[AttachedDevice] {
        self.virtio.attached()
    }

    /// Blocks until the VM stops, joins every thread, and says why it stopped. The console is
    /// flushed by then, unless its reader stalled (see `event_loop::CONSOLE_PATIENCE`).
    pub fn wait(mut self) -> Result<StopReason> {
        Ok(self.join())
    }

    fn join(&mut self) -> StopReason {
        let Some(event_loop) = self.event_loop.take() else {
            return StopReason::UserQuit; // joined already: `wait` consumed the VM
        };
        let reason = event_loop.join().unwrap_or_else(|_| {
            // Only a panic of the event loop (impossible with panic=abort) gets here: make sure
            // the vCPUs are told to stop before joining them.
            let reason = StopReason::Failed("the VMM's event loop ended abnormally".into());
            self.handle.stop(reason.clone());
            reason
        });
        for t in self.vcpus.drain(..) {
            let _ = t.join();
        }
        if let Some(t) = self.console_thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        reason
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        if self.event_loop.is_some() {
            self.handle.stop(StopReason::UserQuit);
            self.join();
        }
    }
}

/// Builds the VM described by `config`, runs it until it stops, and says why it stopped.
pub fn run(config: VmConfig) -> Result<StopReason> {
    Vm::build(config)?.start()?.wait()
}
