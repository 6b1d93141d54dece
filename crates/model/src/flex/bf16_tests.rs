//! The bf16 products against an f64 reference on bf16-rounded inputs (every remainder of rows,
//! columns and odd depths, strided operands, the same bits on any thread count), the operation's
//! value and gradient, its f32 fallbacks, and the cache's life cycle. The kernel tests need a
//! CPU with AVX512-BF16 and say so when it has none.

use bpo_testkit::{bf16_products_run, hashed_values, reference_product};
use burn::tensor::{Device, Tensor, TensorData};

use super::super::bf16::{activation_pairs, bf16_bits};
use super::*;
use crate::host::to_f32_vec;

/// `x` rounded to bf16, as f32.
fn rounded(x: f32) -> f32 {
    f32::from_bits(bf16_bits(x) << 16)
}

/// A `[rows, cols]` flex tensor of hashed values; with `transposed`, the transposed view of a
/// `[cols, rows]` one.
fn matrix(rows: usize, cols: usize, seed: u32, transposed: bool) -> Tensor<2> {
    let values = hashed_values(rows * cols, seed);
    let device = Device::flex();
    if transposed {
        Tensor::<2>::from_data(TensorData::new(values, [cols, rows]), &device).transpose()
    } else {
        Tensor::from_data(TensorData::new(values, [rows, cols]), &device)
    }
}

/// Row-major values of a 2-D tensor.
fn rows_of(t: &Tensor<2>) -> Vec<f32> {
    to_f32_vec(t.clone())
}

/// The largest `|ours - exact| / (1 + sum_p |x_p w_p|)` over the outputs of `x @ w` on
/// bf16-rounded inputs (row-major `[m, k]`, `[k, n]`).
fn error_against_rounded(
    ours: &[f32],
    x: &[f32],
    w: &[f32],
    (m, k, n): (usize, usize, usize),
) -> f32 {
    let (x, w): (Vec<f32>, Vec<f32>) = (
        x.iter().map(|&v| rounded(v)).collect(),
        w.iter().map(|&v| rounded(v)).collect(),
    );
    let abs = |v: &[f32]| v.iter().map(|v| v.abs()).collect::<Vec<_>>();
    let exact = reference_product(&x, &w, m, k, n);
    let scale = reference_product(&abs(&x), &abs(&w), m, k, n);
    (0..m * n)
        .map(|i| (ours[i] - exact[i]).abs() / (1.0 + scale[i]))
        .fold(0.0, f32::max)
}

/// A rayon pool of `threads` threads.
fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

#[test]
fn rounding_is_to_nearest_even() {
    assert_eq!(bf16_bits(1.0), 0x3f80);
    // Halfway between 1.0 and the next bf16: to the even one, below; the next tie rounds up.
    assert_eq!(bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
    assert_eq!(bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
    assert_eq!(bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
    assert_eq!(bf16_bits(-2.5), 0xc020);
    assert_eq!(bf16_bits(f32::MIN_POSITIVE / 2.0), 0);
    assert_eq!(bf16_bits(-f32::MIN_POSITIVE / 2.0), 0x8000);
    assert!(f32::from_bits(bf16_bits(f32::NAN) << 16).is_nan());
    assert_eq!(bf16_bits(f32::INFINITY), 0x7f80);
}

#[test]
fn vector_rounding_equals_scalar_rounding() {
    if !bf16_products_run() {
        return;
    }
    // 70 columns: two whole vectors of 32 and a remainder of 6; ties and large values.
    let (m, k) = (5, 70);
    let mut values = hashed_values(m * k, 3);
    values[1] = f32::from_bits(0x3f80_8000);
    values[2] = f32::from_bits(0x3f81_8000);
    values[40] = 3.0e38;
    // The same matrix stored column-major: read element by element.
    let columns: Vec<f32> = (0..k * m).map(|i| values[(i % m) * k + i / m]).collect();
    let rows = View::rows(&values, k);
    let strided = View::transposed(&columns, m);
    assert_eq!(
        activation_pairs(rows, m, k, false),
        activation_pairs(strided, m, k, false)
    );
}

#[test]
fn bf16_product_sums_exact_products_in_f32() {
    if !bf16_products_run() {
        return;
    }
    // Remainders of the 6-row tiles, the 64-column panels and odd depths; the last shapes split
    // over the pool, by blocks of 96 rows and by panels.
    let shapes = [
        (1, 1, 1),
        (5, 3, 7),
        (6, 64, 64),
        (7, 65, 63),
        (13, 31, 130),
        (100, 576, 200),
        (203, 97, 129),
    ];
    for (m, k, n) in shapes {
        for (tx, tw) in [(false, false), (true, true)] {
            let x = matrix(m, k, 1, tx);
            let w = matrix(k, n, 2, tw);
            let (xf, wf) = (primitive_of(&x), primitive_of(&w));
            let panels = Panels::pack(View::of(&wf).unwrap(), k, n);
            let outputs: Vec<Vec<f32>> = [1, 2, 3]
                .into_iter()
                .map(|threads| pool(threads).install(|| panels.product(View::of(&xf).unwrap(), m)))
                .collect();
            assert_eq!(outputs[0], outputs[1], "{m}x{k}x{n}: 1 and 2 threads");
            assert_eq!(outputs[0], outputs[2], "{m}x{k}x{n}: 1 and 3 threads");
            let error = error_against_rounded(&outputs[0], &rows_of(&x), &rows_of(&w), (m, k, n));
            assert!(error <= 1e-6, "{m}x{k}x{n} {tx}/{tw}: {error}");
        }
    }
}

/// The flex primitive of a plain tensor.
fn primitive_of(t: &Tensor<2>) -> FlexTensor {
    t.clone().try_into_primitive::<Flex>().unwrap()
}

#[test]
fn weight_product_value_and_input_gradient_are_bf16_products() {
    if !bf16_products_run() {
        return;
    }
    let (m, k, n) = (37, 96, 70);
    let x = matrix(m, k, 4, false);
    let w = matrix(k, n, 5, false);
    let r = matrix(m, n, 6, false);
    let plain = rows_of(&weight_product(x.clone(), w.clone(), true));
    let xt = x.clone().autodiff().require_grad();
    let out = weight_product(xt.clone(), w.clone().autodiff(), true);
    let grads = (out.clone() * r.clone().autodiff()).sum().backward();
    assert_eq!(
        rows_of(&out.inner()),
        plain,
        "the same values with autodiff"
    );
    let error = error_against_rounded(&plain, &rows_of(&x), &rows_of(&w), (m, k, n));
    assert!(error <= 1e-6, "value: {error}");
    // dx = dy wᵀ, with dy = r.
    let dx = rows_of(&xt.grad(&grads).expect("x takes a gradient"));
    let wt = rows_of(&w.clone().transpose());
    let error = error_against_rounded(&dx, &rows_of(&r), &wt, (m, n, k));
    assert!(error <= 1e-6, "gradient: {error}");
    // And bf16's difference from f32 is what rounding the inputs makes: under 1%.
    let f32_out = rows_of(&x.clone().matmul(w.clone()));
    let largest = f32_out.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let diff = plain
        .iter()
        .zip(&f32_out)
        .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(diff > 0.0 && diff <= 1e-2 * largest, "{diff} of {largest}");
}

#[test]
fn weights_that_train_and_bf16_off_take_the_f32_product() {
    let (x, w) = (matrix(9, 40, 7, false), matrix(40, 30, 8, false));
    let f32_out = rows_of(&x.clone().matmul(w.clone()));
    let off = rows_of(&weight_product(x.clone(), w.clone(), false));
    let trained = weight_product(
        x.clone().autodiff().require_grad(),
        w.clone().autodiff().require_grad(),
        true,
    );
    let close = |ours: &[f32]| {
        let diff = ours
            .iter()
            .zip(&f32_out)
            .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(diff <= 1e-5, "{diff}");
    };
    close(&off);
    close(&rows_of(&trained.inner()));
}

#[test]
fn a_cached_weight_is_its_storage_while_it_lives() {
    if !bf16_products_run() {
        return;
    }
    let (x, w) = (matrix(8, 48, 9, false), matrix(48, 20, 10, false));
    let entry = cached(&primitive_of(&w)).unwrap();
    // A clone shares the storage, and the entry; a transposed view of it is another entry.
    assert!(Arc::ptr_eq(
        &entry,
        &cached(&primitive_of(&w.clone())).unwrap()
    ));
    let square = matrix(20, 20, 11, false);
    let transposed = cached(&primitive_of(&square.clone().transpose())).unwrap();
    assert!(!Arc::ptr_eq(
        &transposed,
        &cached(&primitive_of(&square)).unwrap()
    ));
    drop(w);
    assert_eq!(entry.owner.strong_count(), 0, "the weight is gone");
    // A new weight of the same shape: its own values, and the dead entry dropped on that miss.
    let w2 = matrix(48, 20, 12, false);
    let ours = rows_of(&weight_product(x.clone(), w2.clone(), true));
    assert!(!holds(&entry), "the dead entry is dropped");
    let error = error_against_rounded(&ours, &rows_of(&x), &rows_of(&w2), (8, 48, 20));
    assert!(error <= 1e-6, "{error}");
}

#[test]
fn a_weight_written_in_place_is_packed_again() {
    if !bf16_products_run() {
        return;
    }
    let (x, w) = (matrix(8, 48, 13, false), matrix(48, 20, 14, false));
    let before = rows_of(&weight_product(x.clone(), w.clone(), true));
    // The only handle: flex may write the sum into the weight's own buffer.
    let w = w + 1.0;
    let ours = rows_of(&weight_product(x.clone(), w.clone(), true));
    assert_ne!(ours, before);
    let error = error_against_rounded(&ours, &rows_of(&x), &rows_of(&w), (8, 48, 20));
    assert!(error <= 1e-6, "{error}");
}
