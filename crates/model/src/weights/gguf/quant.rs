//! GGML tensor types and their dequantisation to f32: F32, F16, BF16, Q8_0, Q4_0 and Q4_1.

use half::{bf16, f16};

/// The tensor element types this reader dequantises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// Blocks of 32: f16 scale, 32 signed bytes.
    Q8_0,
    /// Blocks of 32: f16 scale, 16 bytes of 4-bit codes offset by 8.
    Q4_0,
    /// Blocks of 32: f16 scale and minimum, 16 bytes of 4-bit codes.
    Q4_1,
}

impl GgmlType {
    /// The type's id in the GGUF tensor table.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::Bf16 => 30,
        }
    }

    /// The type with GGUF id `id`, when this reader supports it.
    pub fn from_id(id: u32) -> Option<Self> {
        [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::Bf16,
        ]
        .into_iter()
        .find(|t| t.id() == id)
    }

    /// (elements per block, bytes per block).
    fn block(self) -> (u64, u64) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::Bf16 => (1, 2),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
        }
    }

    /// Bytes taken by `elements` values, or `None` when not a whole number of blocks.
    pub fn byte_size(self, elements: u64) -> Option<u64> {
        let (per_block, bytes) = self.block();
        if !elements.is_multiple_of(per_block) {
            return None;
        }
        (elements / per_block).checked_mul(bytes)
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Dequantises raw tensor bytes of type `ty` (whole blocks) to f32.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    match ty {
        GgmlType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        GgmlType::F16 => bytes.chunks_exact(2).map(|c| f16_at(c, 0)).collect(),
        GgmlType::Bf16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        GgmlType::Q8_0 => bytes
            .chunks_exact(34)
            .flat_map(|block| {
                let d = f16_at(block, 0);
                block[2..].iter().map(move |&q| q as i8 as f32 * d)
            })
            .collect(),
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let block_size = if ty == GgmlType::Q4_0 { 18 } else { 20 };
            let mut out = Vec::with_capacity(bytes.len() / block_size * 32);
            for block in bytes.chunks_exact(block_size) {
                let d = f16_at(block, 0);
                let (min, codes) = if ty == GgmlType::Q4_0 {
                    (-8.0 * d, &block[2..])
                } else {
                    (f16_at(block, 2), &block[4..])
                };
                out.extend(codes.iter().map(|&q| (q & 0x0f) as f32 * d + min));
                out.extend(codes.iter().map(|&q| (q >> 4) as f32 * d + min));
            }
            out
        }
    }
}
