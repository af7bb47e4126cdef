//! ONNX export: a network described by a [`NetworkSpec`] and its parameters as a
//! standard ONNX model, opset [`OPSET`] (IR version [`IR_VERSION`]), for onnxruntime and
//! every other ONNX runtime.
//!
//! ```text
//! input (batch, c, h, w) float, [0, 1] pixels
//!   Sub(input_mean) Div(input_std)      the network's own standardisation
//!   Conv  (kernel_shape, strides, pads)  weight (out, in, k, k), bias (out)
//!   Relu | LeakyRelu (alpha) | MaxPool (kernel_shape, strides) | Flatten (axis 1)
//!   Gemm  (transB = 1)                   weight (out, in), bias (out): x · Wᵀ + b
//! logits (batch, classes) float
//! ```
//!
//! Dropout is the identity at inference and is left out. The parameters are stored
//! as initializers under their `state_dict` names (`conv1.weight`). The protobuf is
//! written here, field by field from `onnx.proto` (a few dozen lines): no protobuf
//! compiler, no generated code.

use crate::spec::{LayerSpec, NetworkSpec};

/// The operator set the graph uses (every op above exists unchanged since opset 13).
pub const OPSET: i64 = 13;
/// The IR version that goes with opset 13.
pub const IR_VERSION: i64 = 7;

/// `TensorProto.DataType.FLOAT`.
const FLOAT: i64 = 1;

/// The ONNX model of `spec` with the parameter values `param(name)` (`conv1.weight`, ...,
/// each as many values as its shape); the error names a parameter that is missing or
/// of another length.
pub fn export(
    spec: &NetworkSpec,
    param: impl Fn(&str) -> Option<Vec<f32>>,
) -> Result<Vec<u8>, String> {
    let classes: usize = spec
        .output_shape()
        .map_err(|e| e.to_string())?
        .iter()
        .product();
    let mut graph = Proto::default();
    let mut initializers = Vec::new();
    for (name, shape) in spec.parameter_shapes() {
        let values = param(&name).ok_or_else(|| format!("parameter `{name}` is missing"))?;
        let len: usize = shape.iter().product();
        if values.len() != len {
            return Err(format!(
                "parameter `{name}` has {} values, its shape {shape:?} needs {len}",
                values.len()
            ));
        }
        initializers.push(tensor(&name, &shape, &values));
    }
    initializers.push(tensor("input_mean", &[], &[spec.normalize.mean]));
    initializers.push(tensor("input_std", &[], &[spec.normalize.std]));

    let mut nodes = vec![
        node("Sub", &["input", "input_mean"], "centered", &[]),
        node("Div", &["centered", "input_std"], "normalized", &[]),
    ];
    let mut x = "normalized".to_string();
    let kept: Vec<&LayerSpec> = spec
        .layers
        .iter()
        .filter(|l| !matches!(l, LayerSpec::Dropout { .. }))
        .collect();
    for (i, layer) in kept.iter().enumerate() {
        let out = match i + 1 == kept.len() {
            true => "logits".to_string(),
            false => format!("layer{}", i + 1),
        };
        let params = |name: &str| [x.clone(), format!("{name}.weight"), format!("{name}.bias")];
        let n = match layer {
            LayerSpec::Conv2d {
                name,
                kernel,
                stride,
                padding,
                ..
            } => {
                let (k, s, p) = (*kernel as i64, *stride as i64, *padding as i64);
                let attrs = [
                    ints("kernel_shape", &[k, k]),
                    ints("strides", &[s, s]),
                    ints("pads", &[p, p, p, p]),
                ];
                node("Conv", &params(name), &out, &attrs)
            }
            LayerSpec::Linear { name, .. } => {
                node("Gemm", &params(name), &out, &[int("transB", 1)])
            }
            LayerSpec::MaxPool2d { kernel, stride } => {
                let (k, s) = (*kernel as i64, stride.unwrap_or(*kernel) as i64);
                let attrs = [ints("kernel_shape", &[k, k]), ints("strides", &[s, s])];
                node("MaxPool", &[x.as_str()], &out, &attrs)
            }
            LayerSpec::Relu {} => node("Relu", &[x.as_str()], &out, &[]),
            LayerSpec::LeakyRelu { negative_slope } => node(
                "LeakyRelu",
                &[x.as_str()],
                &out,
                &[float("alpha", *negative_slope)],
            ),
            LayerSpec::Flatten {} => node("Flatten", &[x.as_str()], &out, &[int("axis", 1)]),
            LayerSpec::Dropout { .. } => unreachable!("filtered out above"),
        };
        nodes.push(n);
        x = out;
    }
    if x != "logits" {
        // A network of dropout alone: the logits are the standardised input.
        nodes.push(node("Identity", &[x.as_str()], "logits", &[]));
    }

    for n in &nodes {
        graph.message(1, n);
    }
    graph.string(2, &spec.name);
    for t in &initializers {
        graph.message(5, t);
    }
    let [c, h, w] = spec.input.map(|d| Dim::Value(d as i64));
    graph.message(11, &value_info("input", &[Dim::Param("batch"), c, h, w]));
    let logits = [Dim::Param("batch"), Dim::Value(classes as i64)];
    graph.message(12, &value_info("logits", &logits));

    let mut opset = Proto::default();
    opset.string(1, "");
    opset.varint(2, OPSET as u64);
    let mut model = Proto::default();
    model.varint(1, IR_VERSION as u64);
    model.string(2, "kd-stack");
    model.string(3, env!("CARGO_PKG_VERSION"));
    model.message(7, &graph);
    model.message(8, &opset);
    Ok(model.0)
}

/// A dimension of a `TensorShapeProto`: a size, or a name for one left open.
enum Dim {
    Value(i64),
    Param(&'static str),
}

/// `ValueInfoProto { name, type: TypeProto { tensor_type { elem_type: FLOAT, shape } } }`.
fn value_info(name: &str, dims: &[Dim]) -> Proto {
    let mut shape = Proto::default();
    for d in dims {
        let mut dim = Proto::default();
        match d {
            Dim::Value(v) => dim.varint(1, *v as u64),
            Dim::Param(p) => dim.string(2, p),
        }
        shape.message(1, &dim);
    }
    let mut tensor_type = Proto::default();
    tensor_type.varint(1, FLOAT as u64);
    tensor_type.message(2, &shape);
    let mut ty = Proto::default();
    ty.message(1, &tensor_type);
    let mut info = Proto::default();
    info.string(1, name);
    info.message(2, &ty);
    info
}

/// `TensorProto { dims, data_type: FLOAT, name, raw_data }` (little-endian f32).
fn tensor(name: &str, dims: &[usize], values: &[f32]) -> Proto {
    let mut t = Proto::default();
    for &d in dims {
        t.varint(1, d as u64);
    }
    t.varint(2, FLOAT as u64);
    t.string(8, name);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.bytes(9, &raw);
    t
}

/// `NodeProto { input, output, name, op_type, attribute }`, named after its output.
fn node<S: AsRef<str>>(op: &str, inputs: &[S], output: &str, attributes: &[Proto]) -> Proto {
    let mut n = Proto::default();
    for i in inputs {
        n.string(1, i.as_ref());
    }
    n.string(2, output);
    n.string(3, output);
    n.string(4, op);
    for a in attributes {
        n.message(5, a);
    }
    n
}

/// `AttributeProto` types (`AttributeProto.AttributeType`).
const ATTR_FLOAT: u64 = 1;
const ATTR_INT: u64 = 2;
const ATTR_INTS: u64 = 7;

fn attribute(name: &str, ty: u64, value: impl FnOnce(&mut Proto)) -> Proto {
    let mut a = Proto::default();
    a.string(1, name);
    value(&mut a);
    a.varint(20, ty);
    a
}

fn int(name: &str, v: i64) -> Proto {
    attribute(name, ATTR_INT, |a| a.varint(3, v as u64))
}

fn ints(name: &str, vs: &[i64]) -> Proto {
    attribute(name, ATTR_INTS, |a| {
        vs.iter().for_each(|&v| a.varint(8, v as u64))
    })
}

fn float(name: &str, v: f32) -> Proto {
    attribute(name, ATTR_FLOAT, |a| a.fixed32(2, v.to_bits()))
}

/// A protobuf message being written: each field is its key (`number << 3 | wire type`)
/// as a varint, then the value. Repeated fields are written one element at a time
/// (unpacked), which every parser reads.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    /// Wire type 0: `int64` (a negative one as its two's complement), `int32`, enums.
    fn varint(&mut self, field: u32, v: u64) {
        self.raw_varint((field as u64) << 3);
        self.raw_varint(v);
    }
    /// Wire type 5: `float`.
    fn fixed32(&mut self, field: u32, bits: u32) {
        self.raw_varint((field as u64) << 3 | 5);
        self.0.extend_from_slice(&bits.to_le_bytes());
    }
    /// Wire type 2: `bytes`, `string` and embedded messages.
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.raw_varint((field as u64) << 3 | 2);
        self.raw_varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn message(&mut self, field: u32, m: &Proto) {
        self.bytes(field, &m.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_keys_are_as_protobuf_encodes_them() {
        // From the protobuf encoding guide: 150 in field 1 is 08 96 01.
        let mut p = Proto::default();
        p.varint(1, 150);
        assert_eq!(p.0, [0x08, 0x96, 0x01]);
        // "testing" in field 2: 12 07 74 65 73 74 69 6e 67.
        let mut p = Proto::default();
        p.string(2, "testing");
        assert_eq!(p.0, [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
        // -1 as an int64: ten bytes, the last 01.
        let mut p = Proto::default();
        p.varint(3, -1i64 as u64);
        assert_eq!(p.0.len(), 11);
        assert_eq!(p.0[10], 0x01);
    }

    #[test]
    fn a_missing_or_misshapen_parameter_is_named() {
        let spec = crate::builtin::builtin("student-cnn").unwrap();
        let err = export(&spec, |_| None).unwrap_err();
        assert_eq!(err, "parameter `conv1.weight` is missing");
        let err = export(&spec, |_| Some(vec![0.0; 3])).unwrap_err();
        assert!(
            err.starts_with("parameter `conv1.weight` has 3 values"),
            "{err}"
        );
    }
}
