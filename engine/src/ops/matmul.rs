//! Matrix products: `a · b` and `a · bᵀ` (a linear layer's `x · Wᵀ` with `W: (out, in)`).

use crate::autograd::Op;
use crate::backend::run;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::tensor::Tensor;
use kernels::params::MatmulParams;
use kernels::registry::Matmul;

/// `op(a) · op(b)` as `p` says.
fn matmul(a: &Storage, b: &Storage, p: &MatmulParams) -> Result<Storage> {
    let [c] = run(Matmul, p, &[a, b])?;
    Ok(c)
}

impl Tensor {
    /// `(m, k) · (k, n) -> (m, n)`.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_impl(rhs, false)
    }

    /// `(m, k) · (n, k)ᵀ -> (m, n)`.
    pub fn matmul_t(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_impl(rhs, true)
    }

    fn matmul_impl(&self, rhs: &Tensor, trans_b: bool) -> Result<Tensor> {
        let op = if trans_b { "matmul_t" } else { "matmul" };
        self.check_same_device(op, rhs)?;
        let mismatch = || Error::ShapeMismatch {
            op,
            lhs: self.shape().to_vec(),
            rhs: rhs.shape().to_vec(),
        };
        let (&[m, k], &[r0, r1]) = (self.shape(), rhs.shape()) else {
            return Err(mismatch());
        };
        let (rk, n) = if trans_b { (r1, r0) } else { (r0, r1) };
        if k != rk || m == 0 || n == 0 || k == 0 {
            return Err(mismatch());
        }
        let mut p = MatmulParams::new(m, n, k)?;
        if trans_b {
            p = p.trans_b();
        }
        let out = matmul(&self.storage(), &rhs.storage(), &p)?;
        let record = Op::Matmul {
            a: self.clone(),
            b: rhs.clone(),
            trans_b,
        };
        Ok(Tensor::from_op(out, vec![m, n], self.device(), record))
    }
}

// out = a · b:   da = g · bᵀ,  db = aᵀ · g
// out = a · bᵀ:  da = g · b,   db = gᵀ · a
pub(crate) fn matmul_backward(
    a: &Tensor,
    b: &Tensor,
    trans_b: bool,
    g: &Storage,
    needs: [bool; 2],
) -> Result<Vec<Option<Storage>>> {
    let (m, k) = (a.shape()[0], a.shape()[1]);
    let n = if trans_b { b.shape()[0] } else { b.shape()[1] };
    let da = match (needs[0], trans_b) {
        (false, _) => None,
        (true, true) => Some(matmul(g, &b.storage(), &MatmulParams::new(m, k, n)?)?),
        (true, false) => Some(matmul(
            g,
            &b.storage(),
            &MatmulParams::new(m, k, n)?.trans_b(),
        )?),
    };
    let db = match (needs[1], trans_b) {
        (false, _) => None,
        (true, true) => Some(matmul(
            g,
            &a.storage(),
            &MatmulParams::new(n, k, m)?.trans_a(),
        )?),
        (true, false) => Some(matmul(
            &a.storage(),
            g,
            &MatmulParams::new(k, n, m)?.trans_a(),
        )?),
    };
    Ok(vec![da, db])
}
