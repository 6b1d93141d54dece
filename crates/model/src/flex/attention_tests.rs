//! The fused attention against an f64 reference and against Burn's attention on the dense mask:
//! values and gradients for odd lengths, every padding case, grouped-query ratios, cached keys
//! and sliding windows; the same bits on any thread count and with or without autodiff.

use std::sync::Arc;

use bpo_testkit::hashed_values;
use burn::tensor::module::attention as burns_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor, TensorData};

use super::*;
use crate::batch::TokenBatch;
use crate::cache::KvCache;
use crate::host::to_f32_vec;

/// One attention call: sizes, the rows' padding (`'1'` real, `'0'` padding, one character per
/// key), the cached keys and the window.
struct Case {
    heads: usize,
    kv_heads: usize,
    dim: usize,
    past: usize,
    window: Option<usize>,
    rows: Vec<&'static str>,
    /// Multiplies the queries: large values make scores of hundreds of nats.
    q_scale: f32,
}

impl Case {
    fn keys(&self) -> usize {
        self.rows[0].len()
    }

    fn len(&self) -> usize {
        self.keys() - self.past
    }

    /// The key ranges, through the cache as the model makes them: a chunk of `past` tokens,
    /// then the chunk of the queries.
    fn mask(&self) -> Arc<KeyRanges> {
        let real: Vec<Vec<bool>> = self
            .rows
            .iter()
            .map(|r| r.chars().map(|c| c == '1').collect())
            .collect();
        let chunk = |from: usize, to: usize| TokenBatch {
            ids: vec![1; real.len() * (to - from)],
            mask: real.iter().flat_map(|r| r[from..to].to_vec()).collect(),
            batch_size: real.len(),
            seq_len: to - from,
        };
        let mut cache = KvCache::new(1);
        let heads = (self.kv_heads, self.heads / self.kv_heads);
        let device = Device::flex();
        let masks = (self.window, self.window.is_none());
        if self.past > 0 {
            cache.begin_chunk(&chunk(0, self.past), heads, 1 << 20, masks, &device);
        }
        let inputs = cache.begin_chunk(
            &chunk(self.past, self.keys()),
            heads,
            1 << 20,
            masks,
            &device,
        );
        inputs.mask_for(self.window).ranges().clone()
    }

    fn dims(&self) -> Dims {
        Dims {
            batch: self.rows.len(),
            heads: self.heads,
            kv_heads: self.kv_heads,
            len: self.len(),
            keys: self.keys(),
            dim: self.dim,
        }
    }

    /// q, k, v and the loss weights `r` (the output's gradient), as flat values.
    fn inputs(&self) -> [Vec<f32>; 4] {
        let d = self.dims();
        let q_len = d.batch * d.heads * d.len * d.dim;
        let kv_len = d.batch * d.kv_heads * d.keys * d.dim;
        let q = hashed_values(q_len, 1)
            .iter()
            .map(|x| x * self.q_scale * 4.0)
            .collect();
        let k = hashed_values(kv_len, 2).iter().map(|x| x * 4.0).collect();
        [q, k, hashed_values(kv_len, 3), hashed_values(q_len, 4)]
    }

    fn scale(&self) -> f64 {
        1.0 / (self.dim as f64).sqrt()
    }
}

/// The output and the gradients of `sum(out * r)` by the textbook formulas, in f64.
fn reference(case: &Case) -> (Vec<f64>, [Vec<f64>; 3]) {
    let (d, mask, [q, k, v, r]) = (case.dims(), case.mask(), case.inputs());
    let scale = case.scale();
    let mut out = vec![0.0; q.len()];
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    for b in 0..d.batch {
        for h in 0..d.heads {
            let kv = (b * d.kv_heads + h / d.group()) * d.keys * d.dim;
            for t in 0..d.len {
                let at = ((b * d.heads + h) * d.len + t) * d.dim;
                let dot = |x: &[f32], y: &[f32]| -> f64 {
                    x.iter().zip(y).map(|(x, y)| *x as f64 * *y as f64).sum()
                };
                let row = |m: &[f32], j: usize| -> Vec<f32> {
                    m[kv + j * d.dim..kv + (j + 1) * d.dim].to_vec()
                };
                let seen: Vec<usize> = (0..d.keys).filter(|&j| mask.allowed(b, t, j)).collect();
                let scores: Vec<f64> = seen
                    .iter()
                    .map(|&j| dot(&q[at..at + d.dim], &row(&k, j)) * scale)
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                let p: Vec<f64> = scores.iter().map(|s| (s - max).exp() / sum).collect();
                let d_out = &r[at..at + d.dim];
                let dp: Vec<f64> = seen.iter().map(|&j| dot(d_out, &row(&v, j))).collect();
                let delta: f64 = p.iter().zip(&dp).map(|(p, dp)| p * dp).sum();
                for (i, &j) in seen.iter().enumerate() {
                    let ds = p[i] * (dp[i] - delta) * scale;
                    for c in 0..d.dim {
                        let key = kv + j * d.dim + c;
                        out[at + c] += p[i] * v[key] as f64;
                        dv[key] += p[i] * d_out[c] as f64;
                        dq[at + c] += ds * k[key] as f64;
                        dk[key] += ds * q[at + c] as f64;
                    }
                }
            }
        }
    }
    (out, [dq, dk, dv])
}

type Inputs = [Tensor<4>; 3];

/// `op(q, k, v)` and the gradients of `sum(out * r)` in the inputs `track` marks (all on flex,
/// with autodiff when any is tracked).
fn value_and_grads(
    case: &Case,
    op: &dyn Fn(&Inputs) -> Tensor<4>,
    track: [bool; 3],
) -> (Vec<f32>, [Option<Vec<f32>>; 3]) {
    let d = case.dims();
    let [q, k, v, r] = case.inputs();
    let device = Device::flex().autodiff();
    let tensor = |values: Vec<f32>, heads: usize, len: usize, tracked: bool| {
        let t = Tensor::<4>::from_data(
            TensorData::new(values, [d.batch, heads, len, d.dim]),
            &device,
        );
        if tracked { t.require_grad() } else { t }
    };
    let inputs = [
        tensor(q, d.heads, d.len, track[0]),
        tensor(k, d.kv_heads, d.keys, track[1]),
        tensor(v, d.kv_heads, d.keys, track[2]),
    ];
    let out = op(&inputs);
    let grads = (out.clone() * tensor(r, d.heads, d.len, false))
        .sum()
        .backward();
    let grads = inputs.each_ref().map(|t| t.grad(&grads).map(to_f32_vec));
    (to_f32_vec(out.inner()), grads)
}

fn ours(case: &Case) -> impl Fn(&Inputs) -> Tensor<4> {
    let (mask, scale) = (case.mask(), case.scale());
    move |[q, k, v]: &Inputs| attention(q, k, v, &mask, scale).expect("flex f32 tensors")
}

/// Burn's attention on the stacked grouped-query layout and the dense mask: the unfused path.
fn burns(case: &Case) -> impl Fn(&Inputs) -> Tensor<4> {
    let (d, mask, scale) = (case.dims(), case.mask(), case.scale());
    move |[q, k, v]: &Inputs| {
        let dense = mask.dense((d.kv_heads, d.group()), &q.device());
        let stacked = q
            .clone()
            .reshape([d.batch, d.kv_heads, d.group() * d.len, d.dim]);
        let options = AttentionModuleOptions {
            scale: Some(scale),
            ..AttentionModuleOptions::default()
        };
        burns_attention(stacked, k.clone(), v.clone(), Some(dense), None, options)
            .reshape([d.batch, d.heads, d.len, d.dim])
    }
}

/// The largest `|x - y| / (1 + |y|)`.
fn relative_diff(x: &[f32], y: impl IntoIterator<Item = f64>) -> f64 {
    let y: Vec<f64> = y.into_iter().collect();
    assert_eq!(x.len(), y.len());
    x.iter()
        .zip(&y)
        .map(|(x, y)| (*x as f64 - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f64::max)
}

/// Ours against f64 and against Burn's, for every choice of tracked inputs.
fn check(case: &Case, tolerance: f64) {
    let (expected_out, expected_grads) = reference(case);
    let (ours, burns) = (ours(case), burns(case));
    for track in [
        [true, true, true],
        [true, false, false],
        [false, true, true],
        [false, false, true],
    ] {
        let (out, grads) = value_and_grads(case, &ours, track);
        let (burn_out, burn_grads) = value_and_grads(case, &burns, track);
        let what = format!("{} rows {:?} {track:?}", case.rows.len(), case.rows);
        assert!(
            relative_diff(&out, expected_out.iter().copied()) <= tolerance,
            "{what}"
        );
        let to_f64 = |v: &[f32]| v.iter().map(|x| *x as f64).collect::<Vec<_>>();
        assert!(
            relative_diff(&out, to_f64(&burn_out)) <= tolerance,
            "{what}"
        );
        for ((grad, expected), burns) in grads.iter().zip(&expected_grads).zip(&burn_grads) {
            assert_eq!(grad.is_some(), burns.is_some(), "{what}");
            if let (Some(grad), Some(burns)) = (grad, burns) {
                let diff = relative_diff(grad, expected.iter().copied());
                assert!(diff <= tolerance, "{what}: gradient {diff} from f64");
                let diff = relative_diff(grad, to_f64(burns));
                assert!(diff <= tolerance, "{what}: gradient {diff} from Burn's");
            }
        }
    }
}

fn case(heads: usize, kv_heads: usize, dim: usize, past: usize, rows: Vec<&'static str>) -> Case {
    Case {
        heads,
        kv_heads,
        dim,
        past,
        window: None,
        rows,
        q_scale: 1.0,
    }
}

#[test]
fn values_and_gradients_equal_f64_and_burns_for_every_padding() {
    let padded = vec![
        "1111111", "0001111", "1111000", "0110110", "0000000", "1000001",
    ];
    for (heads, kv_heads) in [(1, 1), (4, 4), (6, 2), (9, 3), (8, 1)] {
        for past in [0, 3, 6] {
            check(&case(heads, kv_heads, 8, past, padded.clone()), 2e-5);
        }
    }
    // Several blocks of queries (63, 64, 65 and 130 queries), cached keys, head width 64.
    let long: &'static str = Box::leak("1".repeat(200).into_boxed_str());
    let left: &'static str =
        Box::leak(format!("{}{}", "0".repeat(37), "1".repeat(163)).into_boxed_str());
    let right: &'static str =
        Box::leak(format!("{}{}", "1".repeat(150), "0".repeat(50)).into_boxed_str());
    for past in [70, 135, 136, 137] {
        check(&case(6, 2, 64, past, vec![long, left, right]), 2e-5);
    }
}

#[test]
fn sliding_windows_hide_the_keys_beyond_them() {
    for window in [1, 2, 3, 50] {
        for past in [0, 4] {
            let mut case = case(
                4,
                2,
                8,
                past,
                vec!["1111111111", "0011111111", "1111110000", "1101011011"],
            );
            case.window = Some(window);
            check(&case, 2e-5);
        }
    }
}

#[test]
fn scores_of_hundreds_of_nats_stay_finite_and_exact() {
    let long: &'static str =
        Box::leak(format!("{}{}", "0".repeat(5), "1".repeat(300)).into_boxed_str());
    let all: &'static str = Box::leak("1".repeat(305).into_boxed_str());
    let mut case = case(2, 1, 16, 100, vec![long, all]);
    case.q_scale = 30.0;
    check(&case, 1e-4);
}

#[test]
fn the_thread_count_and_autodiff_change_no_bit() {
    let long: &'static str =
        Box::leak(format!("{}{}", "0".repeat(9), "1".repeat(140)).into_boxed_str());
    let case = case(6, 3, 16, 9, vec![long, long, long]);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| value_and_grads(&case, &ours(&case), [true; 3]))
    };
    let one = run(1);
    for threads in [2, 3, 7] {
        assert_eq!(run(threads), one, "{threads} threads");
    }
    // Without autodiff: the values of the tracked call.
    let d = case.dims();
    let [q, k, v, _] = case.inputs();
    let plain = |values: Vec<f32>, heads: usize, len: usize| {
        Tensor::<4>::from_data(
            TensorData::new(values, [d.batch, heads, len, d.dim]),
            &Device::flex(),
        )
    };
    let inputs = [
        plain(q, d.heads, d.len),
        plain(k, d.kv_heads, d.keys),
        plain(v, d.kv_heads, d.keys),
    ];
    assert_eq!(to_f32_vec(ours(&case)(&inputs)), one.0);
}

#[test]
fn strided_inputs_are_read_as_their_values() {
    // v as the transposed view the model passes (`[batch, len, heads, dim]` swapped).
    let case = case(4, 2, 8, 0, vec!["0011111", "1111111"]);
    let d = case.dims();
    let [q, k, v, _] = case.inputs();
    let device = Device::flex();
    let tensor = |values: Vec<f32>, shape: [usize; 4]| {
        Tensor::<4>::from_data(TensorData::new(values, shape), &device)
    };
    let contiguous = tensor(v.clone(), [d.batch, d.kv_heads, d.keys, d.dim]);
    let strided = contiguous
        .clone()
        .swap_dims(1, 2)
        .reshape([d.batch * d.keys * d.kv_heads * d.dim]);
    let strided = strided
        .reshape([d.batch, d.keys, d.kv_heads, d.dim])
        .swap_dims(1, 2);
    let q = tensor(q, [d.batch, d.heads, d.len, d.dim]);
    let k = tensor(k, [d.batch, d.kv_heads, d.keys, d.dim]);
    let run = |v: Tensor<4>| to_f32_vec(ours(&case)(&[q.clone(), k.clone(), v]));
    assert_eq!(run(strided), run(contiguous));
}

#[test]
#[allow(deprecated)] // ndarray: the other CPU backend
fn other_backends_and_dtypes_take_burns_path() {
    let case = case(2, 1, 8, 0, vec!["111"]);
    let mask = case.mask();
    let on = |device: &Device| Tensor::<4>::zeros([1, 2, 3, 8], device);
    let kv = |device: &Device| Tensor::<4>::zeros([1, 1, 3, 8], device);
    let ndarray = Device::ndarray();
    assert!(attention(&on(&ndarray), &kv(&ndarray), &kv(&ndarray), &mask, 1.0).is_none());
    let flex = Device::flex();
    let half = on(&flex).cast(burn::tensor::DType::BF16);
    assert!(attention(&half, &kv(&flex), &kv(&flex), &mask, 1.0).is_none());
    assert!(attention(&on(&flex), &kv(&flex), &kv(&flex), &mask, 1.0).is_some());
}
