//! The ops: each file holds one family, its forward methods on `Tensor` and the
//! backward functions that `autograd::backward_op` dispatches to.

pub(crate) mod activation;
pub(crate) mod conv2d;
pub(crate) mod elementwise;
pub(crate) mod loss;
pub(crate) mod matmul;
pub(crate) mod optim;
pub(crate) mod pool;
