/// The calibration polynomials four pixels at a time (issue 18). Each lane is computed with the
/// scalar functions' operations in the scalar functions' order (`FastBoneModel.bone`,
/// `unbiasedBone`, `soft`, `fatFraction`: the same products, the same sums left to right; only
/// the commutative order of a product's or a sum's two operands may differ), so every lane holds
/// the scalar function's bits: no tolerance to state (but for a NaN's sign, which follows the
/// operands' order and which nothing reads). `FastBoneModelLanesTests` holds them equal on random
/// values, NaN and infinities included, and `FastPathEquivalenceTests` the decomposer on every
/// scene to the bit; `dexa-bench decompose` and `sites` print digests of every output bit.
///
/// Four doubles: two SSE2 instructions per operation on the default x86-64 target (one with
/// AVX), which the compiler keeps in registers; the scalar code's data dependencies leave most
/// of a core's arithmetic units idle.
extension Calibration.FastBoneModel {
    typealias Lanes = SIMD4<Double>

    /// `bone(_:_:_:)` of four pixels.
    @inline(__always)
    func bone(_ u: Lanes, _ v: Lanes, _ r: Lanes) -> Lanes {
        let x: Lanes = u - r * v
        // b.0 + r·(b.1 + r·(b.2 + r·b.12))
        let a0: Lanes = r * b.12 + b.2
        let a1: Lanes = r * a0 + b.1
        let a: Lanes = r * a1 + b.0
        // v·(b.3 + r·b.4 + v·(b.5 + v·b.13))
        let c0: Lanes = v * b.13 + b.5
        let c1: Lanes = r * b.4 + b.3
        let c: Lanes = v * (c1 + v * c0)
        // x·(b.6 + r·(b.7 + r·b.14) + v·(b.8 + r·b.15) + x·b.9)
        let d0: Lanes = r * b.14 + b.7
        let d1: Lanes = r * d0 + b.6
        let d2: Lanes = r * b.15 + b.8
        let d3: Lanes = d1 + v * d2
        let d: Lanes = x * (d3 + x * b.9)
        // v·r·(r·b.10 + v·b.11)
        let e0: Lanes = r * b.10 + v * b.11
        let e: Lanes = v * r * e0
        let p: Lanes = a + c + d + e
        return x * p
    }

    /// What `unbiasedBone` takes off `bone`, before its factor ½: f_xx·var x + 2·f_xv·cov(x, v) +
    /// f_vv·var v, of four pixels.
    @inline(__always)
    func noiseCurvature(_ u: Lanes, _ v: Lanes, _ r: Lanes, varU: Lanes, varV: Lanes, covUV: Lanes) -> Lanes {
        let x: Lanes = u - r * v
        // bB = b.6 + r·(b.7 + r·b.14) + v·(b.8 + r·b.15)
        let g0: Lanes = r * b.14 + b.7
        let g1: Lanes = r * g0 + b.6
        let g2: Lanes = r * b.15 + b.8
        let bB: Lanes = g1 + v * g2
        // fxx = 2·bB + 6·b.9·x
        let fxx: Lanes = 2 * bB + (6 * b.9) * x
        // aV = b.3 + r·b.4 + 2·v·b.5 + r·r·b.10 + 2·v·r·b.11 + 3·v·v·b.13
        let twoV: Lanes = 2 * v
        let h0: Lanes = r * b.4 + b.3
        let h1: Lanes = h0 + twoV * b.5
        let h2: Lanes = h1 + r * r * b.10
        let h3: Lanes = h2 + twoV * r * b.11
        let aV: Lanes = h3 + 3 * v * v * b.13
        // fxv = aV + 2·x·(b.8 + r·b.15)
        let fxv: Lanes = aV + 2 * x * g2
        // fvv = x·(2·b.5 + 2·r·b.11 + 6·v·b.13)
        let k0: Lanes = 2 * r * b.11 + (2 * b.5)
        let fvv: Lanes = x * (k0 + 6 * v * b.13)
        // varX = varU + r·r·varV − 2·r·covUV; covXV = covUV − r·varV
        let varX: Lanes = varU + r * r * varV - 2 * r * covUV
        let covXV: Lanes = covUV - r * varV
        let s0: Lanes = fxx * varX + 2 * fxv * covXV
        return s0 + fvv * varV
    }

    /// `soft(_:_:_:)` of four pixels.
    @inline(__always)
    func soft(_ u: Lanes, _ v: Lanes, _ r: Lanes) -> Lanes {
        // s.0 + r·s.1 + u·(s.2 + r·(s.3 + r·s.4)) + v·(s.5 + r·(s.6 + r·s.7))
        //   + u·u·(s.8 + r·s.11) + v·v·(s.9 + r·s.12) + u·v·(s.10 + r·s.13)
        let t0: Lanes = r * s.1 + s.0
        let t1: Lanes = r * s.4 + s.3
        let t2: Lanes = r * t1 + s.2
        let t3: Lanes = r * s.7 + s.6
        let t4: Lanes = r * t3 + s.5
        let t5: Lanes = r * s.11 + s.8
        let t6: Lanes = r * s.12 + s.9
        let t7: Lanes = r * s.13 + s.10
        let q0: Lanes = t0 + u * t2
        let q1: Lanes = q0 + v * t4
        let q2: Lanes = q1 + u * u * t5
        let q3: Lanes = q2 + v * v * t6
        return q3 + u * v * t7
    }

    /// `fatFraction(_:_:)` of four pixels.
    @inline(__always)
    func fatFraction(_ u: Lanes, _ v: Lanes) -> Lanes {
        let r: Lanes = u / v
        // f.0 + r·(f.1 + r·f.3 + v·f.4) + v·(f.2 + v·f.5)
        let a0: Lanes = r * f.3 + f.1
        let a: Lanes = a0 + v * f.4
        let c: Lanes = v * f.5 + f.2
        let p: Lanes = r * a + f.0
        return p + v * c
    }

    /// The polynomials of `n` pixels: the bone mineral against `rBone` (`bone`) and with its
    /// noise bias taken off (`unbiased`), the soft tissue against `rSoft`, and the fat fraction
    /// (unclamped); four at a time, the last `n % 4` by the scalar functions.
    func evaluate(_ n: Int, u: UnsafePointer<Double>, v: UnsafePointer<Double>, rBone: UnsafePointer<Double>, rSoft: UnsafePointer<Double>,
                  varU: UnsafePointer<Double>, varV: UnsafePointer<Double>, covUV: UnsafePointer<Double>,
                  bone boneOut: UnsafeMutablePointer<Double>, unbiased: UnsafeMutablePointer<Double>,
                  soft softOut: UnsafeMutablePointer<Double>, fat fatOut: UnsafeMutablePointer<Double>) {
        var c = 0
        while c + 4 <= n {
            let uu = load(u, c), vv = load(v, c), rb = load(rBone, c)
            let b = bone(uu, vv, rb)
            store(b, boneOut, c)
            store(b - 0.5 * noiseCurvature(uu, vv, rb, varU: load(varU, c), varV: load(varV, c), covUV: load(covUV, c)), unbiased, c)
            store(soft(uu, vv, load(rSoft, c)), softOut, c)
            store(fatFraction(uu, vv), fatOut, c)
            c += 4
        }
        while c < n {
            boneOut[c] = bone(u[c], v[c], rBone[c])
            unbiased[c] = unbiasedBone(u[c], v[c], rBone[c], varU: varU[c], varV: varV[c], covUV: covUV[c])
            softOut[c] = soft(u[c], v[c], rSoft[c])
            fatOut[c] = fatFraction(u[c], v[c])
            c += 1
        }
    }

    /// `tissueRatio(highAttenuation:fat:)` of four pixels, NaN where it has none.
    @inline(__always)
    func tissueRatio(highAttenuation v: Lanes, fat: Lanes) -> Lanes {
        let a = f.3
        let b: Lanes = v * f.4 + f.1
        let c0: Lanes = v * f.5 + f.2
        let c: Lanes = (v * c0 + f.0) - fat
        guard a != 0 else { return (-c / b).replacing(with: .nan, where: .!(b .< 0)) }
        let disc: Lanes = b * b - (4 * a) * c
        // A negative discriminant's square root is NaN, and so is every comparison after it.
        let root = disc.squareRoot()
        let first: Lanes = (-b - root) / (2 * a), second: Lanes = (-b + root) / (2 * a)
        // The first root where it qualifies, else the second, as the scalar function tries them
        // (2a·first + b is −root and 2a·second + b is +root: the second can qualify only where
        // the root rounds to nothing, and then the first is preferred as there).
        var out = Lanes(repeating: .nan)
        out.replace(with: second, where: (second .> 0) .& ((2 * a) * second + b .< 0))
        out.replace(with: first, where: (first .> 0) .& ((2 * a) * first + b .< 0))
        return out
    }

    /// `Swift.max(0, x)` of four values (0 for NaN, as `max` gives).
    @inline(__always)
    static func atLeastZero(_ x: Lanes) -> Lanes { x.replacing(with: 0, where: .!(x .>= 0)) }

    /// The variance of u − r·v (`varU + r·r·varV − 2·r·covUV`, at least 0) of four pixels.
    @inline(__always)
    static func differenceVariance(_ r: Lanes, varU: Lanes, varV: Lanes, covUV: Lanes) -> Lanes {
        atLeastZero(varU + r * r * varV - 2 * r * covUV)
    }

    /// `tissueRatio(highAttenuation:fat:)` of `n` pixels (NaN where none), four at a time.
    func tissueRatios(_ n: Int, high: UnsafePointer<Double>, fat: UnsafePointer<Double>, into out: UnsafeMutablePointer<Double>) {
        var c = 0
        while c + 4 <= n {
            store(tissueRatio(highAttenuation: load(high, c), fat: load(fat, c)), out, c)
            c += 4
        }
        while c < n {
            out[c] = tissueRatio(highAttenuation: high[c], fat: fat[c]) ?? .nan
            c += 1
        }
    }

    /// The classification's readings of `n` smoothed pixels (u, v) against the baseline ratio
    /// `r`: the bone signal u − r·v (`signal`), the bone mineral (`bone`) and its noise over a
    /// smoothing window of `window` pixels (`sigma`: the difference's standard deviation · bone
    /// / signal / √window), four at a time.
    func classificationReadings(_ n: Int, u: UnsafePointer<Double>, v: UnsafePointer<Double>, r: UnsafePointer<Double>,
                                varU: UnsafePointer<Double>, varV: UnsafePointer<Double>, covUV: UnsafePointer<Double>, rootWindow: Double,
                                signal signalOut: UnsafeMutablePointer<Double>, bone boneOut: UnsafeMutablePointer<Double>,
                                sigma sigmaOut: UnsafeMutablePointer<Double>) {
        var c = 0
        while c + 4 <= n {
            let uu = load(u, c), vv = load(v, c), rr = load(r, c)
            let signal: Lanes = uu - rr * vv
            let b = bone(uu, vv, rr)
            let spread = Self.differenceVariance(rr, varU: load(varU, c), varV: load(varV, c), covUV: load(covUV, c))
            store(signal, signalOut, c)
            store(b, boneOut, c)
            store(spread.squareRoot() * b / signal / rootWindow, sigmaOut, c)
            c += 4
        }
        while c < n {
            let rr = r[c], signal = u[c] - rr * v[c], b = bone(u[c], v[c], rr)
            signalOut[c] = signal
            boneOut[c] = b
            sigmaOut[c] = max(0, varU[c] + rr * rr * varV[c] - 2 * rr * covUV[c]).squareRoot() * b / signal / rootWindow
            c += 1
        }
    }

    /// The noise of `n` pixels' ratios u/v (the standard deviation of u − r·v over v), four at a
    /// time.
    func ratioNoise(_ n: Int, ratio: UnsafePointer<Double>, high: UnsafePointer<Double>, varU: UnsafePointer<Double>, varV: UnsafePointer<Double>,
                    covUV: UnsafePointer<Double>, into out: UnsafeMutablePointer<Double>) {
        var c = 0
        while c + 4 <= n {
            let spread = Self.differenceVariance(load(ratio, c), varU: load(varU, c), varV: load(varV, c), covUV: load(covUV, c))
            store(spread.squareRoot() / load(high, c), out, c)
            c += 4
        }
        while c < n {
            let r = ratio[c]
            out[c] = max(0, varU[c] + r * r * varV[c] - 2 * r * covUV[c]).squareRoot() / high[c]
            c += 1
        }
    }
}

@inline(__always)
private func load(_ p: UnsafePointer<Double>, _ c: Int) -> SIMD4<Double> {
    UnsafeRawPointer(p + c).loadUnaligned(as: SIMD4<Double>.self)
}

@inline(__always)
private func store(_ x: SIMD4<Double>, _ p: UnsafeMutablePointer<Double>, _ c: Int) {
    UnsafeMutableRawPointer(p + c).storeBytes(of: x, as: SIMD4<Double>.self)
}
