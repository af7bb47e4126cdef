//! `KD_ISA` chooses the instruction set the kernels run on. A test binary of its own:
//! the choice is read once per process, so no other test may touch the kernels first.

use kernels::cpu::{self, Isa};
use kernels::params::MatmulParams;

#[test]
fn kd_isa_picks_the_kernels_path() {
    // NOTE: the only test in this binary, so nothing else reads the variable meanwhile.
    std::env::set_var("KD_ISA", "portable");
    assert_eq!(Isa::from_env(), Ok(Isa::Portable));
    assert_eq!(Isa::active(), Isa::Portable);
    // And the kernels still compute on it: (1, 2)·(2, 1) = 1·3 + 2·4 = 11.
    let mut c = [0.0];
    cpu::matmul(
        &[1.0, 2.0],
        &[3.0, 4.0],
        &mut c,
        &MatmulParams::new(1, 1, 2).unwrap(),
    )
    .unwrap();
    assert_eq!(c, [11.0]);
    // A change after the first kernel call does not switch paths mid-process.
    std::env::set_var("KD_ISA", "sse9");
    assert_eq!(Isa::active(), Isa::Portable);
    assert!(Isa::from_env().is_err());
}
