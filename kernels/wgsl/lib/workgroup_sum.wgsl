// The sum of one value from each of a workgroup's 256 threads, by a tree in workgroup
// memory that adds them in a fixed order (deterministic). Every thread of the workgroup
// calls it, in uniform control flow; each gets the sum.
var<workgroup> partial: array<f32, 256>;

fn workgroup_sum(acc: f32, tid: u32) -> f32 {
    partial[tid] = acc;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if (tid < half) {
            partial[tid] += partial[tid + half];
        }
        workgroupBarrier();
    }
    return partial[0];
}
