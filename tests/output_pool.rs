//! The CPU backend's output pool (`engine::storage`): outputs that a kernel declares it
//! writes whole (`Access::Out`) are handed over unzeroed, holding a dropped tensor's
//! values. These tests fill those outputs with NaN instead and check that every op of
//! every built-in network, and every loss, gives the same bits as with zeroed or reused
//! buffers: a kernel that leaves part of such an output unwritten shows as NaNs.
//!
//! NOTE: its own test binary, because the NaN switch is process-wide.

mod common;

use common::{rng, uniform};
use engine::{Device, Labels, Result, Tensor};
use models::{builtin, Mode, Module, Network};

/// Every value of `ts`, bit for bit.
fn bits(ts: &[Tensor]) -> Vec<Vec<u32>> {
    ts.iter()
        .map(|t| t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// The loss and every parameter's gradient of one training step of `net` on `x`, with
/// the network's dropout seeded.
fn step(net: &Network, x: &Tensor) -> Vec<Vec<u32>> {
    let y = Labels::new(&[3, 1, 4, 1], x.device()).unwrap();
    let loss = net
        .forward(x, Mode::Train { seed: 9 })
        .and_then(|logits| logits.cross_entropy(&y))
        .unwrap();
    let grads = loss.backward().unwrap();
    let mut out = vec![loss.clone()];
    out.extend(
        net.parameters()
            .iter()
            .map(|(_, p)| grads.get(p).unwrap().clone()),
    );
    bits(&out)
}

/// The built-in network `name` and a batch of 4 random images for it.
fn network(name: &str) -> (Network, Tensor) {
    let device = Device::Cpu;
    let net = Network::new(&builtin::builtin(name).unwrap(), 7, &device).unwrap();
    let x = Tensor::from_vec(uniform(&mut rng(1), 4 * 784), &[4, 1, 28, 28], &device).unwrap();
    (net, x)
}

fn network_step(name: &str) -> Vec<Vec<u32>> {
    let (net, x) = network(name);
    step(&net, &x)
}

/// The losses and the ops the networks do not use, each with its gradient.
fn losses_and_other_ops() -> Result<Vec<Vec<u32>>> {
    let device = Device::Cpu;
    let mut r = rng(2);
    let s = Tensor::parameter(uniform(&mut r, 6 * 10), &[6, 10], &device)?;
    let t = Tensor::from_vec(uniform(&mut r, 6 * 10), &[6, 10], &device)?;
    let y = Labels::new(&[0, 9, 2, 3, 4, 5], &device)?;
    let kd = s.kd_loss(&t, &y, 4.0, 0.7)?;
    let dkd = s.dkd_loss(&t, &y, 2.0, 1.0, 8.0)?;
    let kl = s.softmax_kl(&t, 3.0)?;
    let rows = t.gather_rows(&Labels::new(&[5, 0, 5], &device)?)?;
    let other = s
        .log_softmax()?
        .leaky_relu(0.1)?
        .sum_axis(0)?
        .sum()?
        .add(&rows.sum()?)?
        .scale(0.5)?;
    let mut out = vec![
        kd.loss.clone(),
        kd.parts,
        dkd.loss.clone(),
        dkd.parts,
        kl.clone(),
    ];
    for loss in [&kd.loss, &dkd.loss, &kl, &other] {
        out.push(loss.backward()?.get(&s).unwrap().clone());
    }
    out.push(other);
    let argmax = s.argmax_rows()?;
    let mut all = bits(&out);
    all.push(argmax);
    Ok(all)
}

fn everything() -> Vec<Vec<u32>> {
    let mut all: Vec<Vec<u32>> = builtin::NAMES
        .iter()
        .flat_map(|name| network_step(name))
        .collect();
    all.extend(losses_and_other_ops().unwrap());
    all
}

/// One test, not two: the NaN switch and the pool are the process's, shared by tests
/// that would run side by side.
#[test]
fn outputs_handed_over_unzeroed_are_written_whole_and_the_pool_stops_growing() {
    // First fresh buffers, then reused ones holding the first run's values, then NaNs.
    let fresh = everything();
    let reused = everything();
    engine::poison_unzeroed_outputs(true);
    let poisoned = everything();
    engine::poison_unzeroed_outputs(false);
    assert!(fresh == reused, "a reused output buffer changed a result");
    assert!(
        fresh == poisoned,
        "a kernel left part of an unzeroed output unwritten"
    );
    assert!(
        fresh.iter().flatten().all(|&b| !f32::from_bits(b).is_nan()),
        "NaN in the results themselves: the comparison above means nothing"
    );

    // A training loop: one network, one batch, step after step.
    let (net, x) = network("teacher-cnn");
    let mut sizes = vec![];
    for _ in 0..6 {
        step(&net, &x);
        sizes.push(engine::pooled_words());
    }
    assert!(sizes[0] > 0, "nothing was pooled: {sizes:?}");
    assert!(
        sizes[1..].windows(2).all(|w| w[0] == w[1]),
        "the pool grows step after step: {sizes:?} words"
    );
}
