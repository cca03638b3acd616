/*
 * testhost-kvm-smoke: proves that /dev/kvm runs guest code. Creates a VM with 4 KiB of memory and one
 * vCPU in real mode, runs a few instructions that compute 2+2 and write the result to port 0x3f8, then
 * hlt. Exits 0 and prints one line when the guest did exactly that, 1 otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int fail(const char *what) {
    printf("kvm-smoke: FAIL: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(void) {
    static const uint8_t code[] = {
        0xba, 0xf8, 0x03, /* mov $0x3f8, %dx */
        0x00, 0xd8,       /* add %bl, %al    */
        0x04, '0',        /* add $'0', %al   */
        0xee,             /* out %al, (%dx)  */
        0xb0, '\n',       /* mov $'\n', %al  */
        0xee,             /* out %al, (%dx)  */
        0xf4,             /* hlt             */
    };
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) return fail("open /dev/kvm");
    int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) { errno = EINVAL; return fail("KVM_GET_API_VERSION"); }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
    if (vm < 0) return fail("KVM_CREATE_VM");
    uint8_t *mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return fail("mmap");
    memcpy(mem, code, sizeof code);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0x1000, .memory_size = 0x1000, .userspace_addr = (uint64_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) return fail("KVM_SET_USER_MEMORY_REGION");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0UL);
    if (vcpu < 0) return fail("KVM_CREATE_VCPU");
    int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, NULL);
    if (sz < (int)sizeof(struct kvm_run)) return fail("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) return fail("mmap kvm_run");
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) return fail("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) return fail("KVM_SET_SREGS");
    struct kvm_regs regs = {.rip = 0x1000, .rax = 2, .rbx = 2, .rflags = 0x2};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) return fail("KVM_SET_REGS");

    char out[8];
    int n = 0;
    for (int exits = 0; exits < 100; exits++) {
        if (ioctl(vcpu, KVM_RUN, NULL) < 0) return fail("KVM_RUN");
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3f8 && run->io.size == 1 && n < 7)
                out[n++] = *((char *)run + run->io.data_offset);
            break;
        case KVM_EXIT_HLT:
            out[n] = 0;
            if (strcmp(out, "4\n") != 0) {
                printf("kvm-smoke: FAIL: the guest wrote '%s' instead of '4\\n'\n", out);
                return 1;
            }
            printf("kvm-smoke: ok: KVM API %d, the guest computed 2+2=4, wrote it to port 0x3f8, halted\n", api);
            return 0;
        default:
            printf("kvm-smoke: FAIL: unexpected exit reason %u\n", run->exit_reason);
            return 1;
        }
    }
    printf("kvm-smoke: FAIL: the guest did not halt\n");
    return 1;
}
