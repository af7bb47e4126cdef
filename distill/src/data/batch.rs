//! Batches: a seeded shuffle per epoch, optional jitter, the last partial batch included.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{pixel, DataError, Dataset, IMAGE_PIXELS, IMAGE_SIDE};

/// Jitter shifts each image by `-JITTER_MAX..=JITTER_MAX` pixels in x and in y.
pub const JITTER_MAX: i32 = 2;

// The shuffle and the jitter of one epoch draw from unrelated generators, so turning
// jitter on does not change the order.
const SHUFFLE_STREAM: u8 = 0;
const JITTER_STREAM: u8 = 1;

fn rng_for(seed: u64, epoch: u64, stream: u8) -> StdRng {
    // NOTE: the whole 32-byte key rather than `seed ^ epoch`, so that (seed 1, epoch 0)
    // and (seed 0, epoch 1) differ. StdRng (ChaCha12) is reproducible for a given
    // `rand` version, which Cargo.lock pins.
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16] = stream;
    StdRng::from_seed(key)
}

/// A permutation of `0..len`, the same for the same `(seed, epoch)`.
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rng_for(seed, epoch, SHUFFLE_STREAM));
    order
}

/// Shifts a 28x28 image (of pixel bytes or values) by `(dx, dy)` pixels (right and down
/// when positive), filling with zeros: `dst[y][x] = src[y - dy][x - dx]`.
pub fn jitter_shift<T: Copy + Default>(
    src: &[T; IMAGE_PIXELS],
    dst: &mut [T; IMAGE_PIXELS],
    dx: i32,
    dy: i32,
) {
    let side = IMAGE_SIDE as i32;
    let (dx, dy) = (dx.clamp(-side, side), dy.clamp(-side, side));
    dst.fill(T::default());
    // Columns x0..x1 of dst come from columns x0 - dx..x1 - dx of src.
    let (x0, x1) = (dx.max(0), side.min(side + dx));
    if x0 >= x1 {
        return;
    }
    for y in dy.max(0)..side.min(side + dy) {
        let d = (y * side) as usize;
        let s = ((y - dy) * side) as usize;
        dst[d + x0 as usize..d + x1 as usize]
            .copy_from_slice(&src[s + (x0 - dx) as usize..s + (x1 - dx) as usize]);
    }
}

/// How to cut a dataset into batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Examples per batch, at least 1; the last batch of an epoch holds the remainder.
    pub batch_size: usize,
    /// Shuffle with `epoch_order(len, seed, epoch)`; otherwise dataset order.
    pub shuffle: bool,
    /// Shift each image by up to `JITTER_MAX` pixels, seeded by `(seed, epoch)`.
    pub jitter: bool,
    /// Seeds the shuffle and the jitter, together with the epoch.
    pub seed: u64,
}

impl Batching {
    /// Training: shuffled each epoch, no jitter.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        Batching {
            batch_size,
            shuffle: true,
            jitter: false,
            seed,
        }
    }

    /// Evaluation: dataset order, no jitter.
    pub fn eval(batch_size: usize) -> Self {
        Batching {
            batch_size,
            shuffle: false,
            jitter: false,
            seed: 0,
        }
    }

    /// The same batching with jitter on or off.
    pub fn with_jitter(self, jitter: bool) -> Self {
        Batching { jitter, ..self }
    }
}

/// One batch. `indices[k]` is the dataset index of example `k`, e.g. to look up the
/// teacher logits cached for it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    // images: (b, 28, 28); labels, indices: (b,)
    /// Pixels in `[0, 1]`, `(len, 28, 28)` row-major.
    pub images: Vec<f32>,
    /// One digit `0..10` per example.
    pub labels: Vec<u32>,
    /// Per example, its index in the dataset.
    pub indices: Vec<usize>,
}

impl Batch {
    /// The number of examples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch holds no examples.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// The batches of one epoch, from `Dataset::batches`.
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    next: usize,
    batch_size: usize,
    jitter: Option<StdRng>,
}

impl Dataset {
    /// The batches of epoch `epoch`; every example appears exactly once, the last batch
    /// holds the remainder.
    pub fn batches(&self, batching: Batching, epoch: u64) -> Result<Batches<'_>, DataError> {
        if batching.batch_size == 0 {
            return Err(DataError::ZeroBatchSize);
        }
        let order = if batching.shuffle {
            epoch_order(self.len(), batching.seed, epoch)
        } else {
            (0..self.len()).collect()
        };
        let jitter = batching
            .jitter
            .then(|| rng_for(batching.seed, epoch, JITTER_STREAM));
        Ok(Batches {
            data: self,
            order,
            next: 0,
            batch_size: batching.batch_size,
            jitter,
        })
    }
}

impl Batches<'_> {
    /// Refills `batch` (reusing its buffers) with the next batch; `false` once the epoch
    /// is over.
    pub fn next_into(&mut self, batch: &mut Batch) -> bool {
        let end = self
            .order
            .len()
            .min(self.next.saturating_add(self.batch_size));
        if self.next >= end {
            return false;
        }
        batch.images.clear();
        batch.labels.clear();
        batch.indices.clear();
        for &i in &self.order[self.next..end] {
            let image = &self.data.pixels()[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS];
            match &mut self.jitter {
                None => batch.images.extend(image.iter().map(|&b| pixel(b))),
                Some(rng) => {
                    let dx = rng.random_range(-JITTER_MAX..=JITTER_MAX);
                    let dy = rng.random_range(-JITTER_MAX..=JITTER_MAX);
                    let mut shifted = [0u8; IMAGE_PIXELS];
                    let src = image.try_into().expect("a dataset image is 784 pixels");
                    jitter_shift(src, &mut shifted, dx, dy);
                    batch.images.extend(shifted.iter().map(|&b| pixel(b)));
                }
            }
            batch.labels.push(u32::from(self.data.labels()[i]));
            batch.indices.push(i);
        }
        self.next = end;
        true
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let mut batch = Batch::default();
        self.next_into(&mut batch).then_some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}
