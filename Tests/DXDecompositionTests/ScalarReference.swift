@testable import DXDecomposition
import DXProtocol

// The scalar reference of issue 18's fast paths: the bodies of `PreparedAttenuation.process` and
// `Decomposer.decompose(_:memory:)` as they were before they were vectorised (591e428), kept
// verbatim so that the fast paths are held bit-equal to them (FastPathEquivalenceTests). Not
// used by the product. Changes of the algorithm itself are made here as in the product, as
// written: on 2026-12-07 the baseline's opening in the fat model's terms (docs/physics.md, "The
// neck's own bias"); the comparison holds the fast paths, not that change, which its own tests
// hold (`DecompositionTests`, "a baseline in the fat model's terms").

/// `FastLog.ln` as it was: an integer exponent and a branch.
enum FastLogReference {
    static func ln(_ x: Double) -> Double {
        var bits = x.bitPattern
        var e = Int((bits >> 52) & 0x7FF) - 1023
        bits = (bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000
        var m = Double(bitPattern: bits)
        if m > 1.4142135623730951 { m *= 0.5; e += 1 }
        let s = (m - 1) / (m + 1), s2 = s * s
        let series = 2 + s2 * (2.0 / 3 + s2 * (2.0 / 5 + s2 * (2.0 / 7 + s2 * (2.0 / 9 + s2 * (2.0 / 11 + s2 * (2.0 / 13 + s2 * (2.0 / 15)))))))
        return Double(e) * 0.693_147_180_559_945_3 + s * series
    }
}

extension PreparedAttenuation {
    func processReference(_ line: ScanLine, scatterSources sources: ScatterSources? = nil) throws(DecompositionError) -> AttenuationLine {
        let n = line.channels
        guard n == channels, line.samples.count == 2 * n else { throw .channelMismatch(expected: channels, got: n) }
        // One scratch block for the six outputs, filled by one loop over raw pointers, then
        // copied into the line's arrays.
        let out = UnsafeMutablePointer<Double>.allocate(capacity: 9 * n)
        defer { out.deallocate() }
        let flagBits = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        defer { flagBits.deallocate() }
        let beam: UInt8 = line.flags.contains(.xrayOn) ? 0 : PixelFlags.noBeam.rawValue
        let scattered = scatterKernel.isEmpty ? nil : (sources ?? scatterSources(line)).map { scatter(from: $0) }
        let saturatedBit = PixelFlags.saturated.rawValue, belowDarkBit = PixelFlags.belowDark.rawValue
        let starvedBit = PixelFlags.photonStarved.rawValue, minimum = Self.minimumPhotons
        let unmeasuredBits = PixelFlags.unmeasured.rawValue
        line.samples.withUnsafeBufferPointer { samples in
            darkLow.withUnsafeBufferPointer { dL in darkHigh.withUnsafeBufferPointer { dH in
            i0Low.withUnsafeBufferPointer { iL in i0High.withUnsafeBufferPointer { iH in
            lnI0Low.withUnsafeBufferPointer { lnL in lnI0High.withUnsafeBufferPointer { lnH in
            scaleLow.withUnsafeBufferPointer { sL in scaleHigh.withUnsafeBufferPointer { sH in
            floorLow.withUnsafeBufferPointer { fL in floorHigh.withUnsafeBufferPointer { fH in
                let low = out, high = out + n, tLow = out + 2 * n, tHigh = out + 3 * n, varLow = out + 4 * n, varHigh = out + 5 * n
                let covLH = out + 8 * n
                let tVarLow = out + 6 * n, tVarHigh = out + 7 * n
                let keeps = keepsTransmissions, a = deadTimeFraction, mix = mixing, unmix = 1 / (1 - mixing)
                let crosses = !crossLow.isEmpty
                for c in 0..<n {
                    var f = beam
                    let lo = samples[2 * c], hi = samples[2 * c + 1]
                    var il = Double(lo) - dL[c], ih = Double(hi) - dH[c]
                    // The rate loss undone (`CountRate`); the noise stays that of the counts
                    // recorded (below, through their relative variance).
                    let recordedLow = il, recordedHigh = ih
                    if a > 0 && il > 0 && ih > 0 { (il, ih) = CountRate.trueCounts(low: il, high: ih, a: a) }
                    // Scatter taken off (`ScatterModel`); what is left is the primary, whose
                    // relative noise grows by what was taken.
                    let beforeLow = il, beforeHigh = ih
                    if let scattered { il -= scattered.low[c]; ih -= scattered.high[c] }
                    // The low window unmixed (added with `LowWindowMixing`, 2026-12-06).
                    let mixedLow = il, share = mix > 0 ? mix * airLowOverHigh[c] : 0
                    if mix > 0 { il = (il - share * ih) * unmix }
                    if lo == 65535 || hi == 65535 {
                        f |= saturatedBit
                        tLow[c] = .nan
                        tHigh[c] = .nan
                        tVarLow[c] = .nan
                        tVarHigh[c] = .nan
                    } else {
                        tLow[c] = il * iL[c]
                        tHigh[c] = ih * iH[c]
                        if keeps {
                            // Poisson variance of the count (at least the pedestal's noise),
                            // scaled with the count where its rate loss was undone.
                            let gl = recordedLow > 0 ? il / recordedLow : 1, gh = recordedHigh > 0 ? ih / recordedHigh : 1
                            tVarHigh[c] = (max(recordedHigh, 0) + 1) * gh * gh * iH[c] * iH[c]
                            if mix > 0 {
                                let gm = recordedLow > 0 ? mixedLow / recordedLow : 1
                                let counts = (max(recordedLow, 0) + 1) * gm * gm + share * share * (max(recordedHigh, 0) + 1) * gh * gh
                                tVarLow[c] = counts * unmix * unmix * iL[c] * iL[c]
                            } else {
                                tVarLow[c] = (max(recordedLow, 0) + 1) * gl * gl * iL[c] * iL[c]
                            }
                        }
                    }
                    if recordedLow < fL[c] || recordedHigh < fH[c] || il <= 0 || ih <= 0 {
                        f |= belowDarkBit
                    } else if recordedLow < minimum || recordedHigh < minimum {
                        f |= starvedBit
                    }
                    // The unmixed count judged by its own noise (added 2026-12-06).
                    if mix > 0 && f & belowDarkBit == 0 && recordedLow > 0 && recordedHigh > 0 {
                        let countsHigh = (recordedHigh + 1) * (beforeHigh / recordedHigh) * (beforeHigh / recordedHigh)
                        let countsLow = (recordedLow + 1) * (beforeLow / recordedLow) * (beforeLow / recordedLow)
                        if !(il >= max(Self.noPhotons, Self.noPhotonSigmas * share * countsHigh.squareRoot() * unmix)) {
                            f = (f & ~starvedBit) | belowDarkBit
                        } else if il * il < minimum * (countsLow + share * share * countsHigh) * unmix * unmix {
                            f |= starvedBit
                        }
                    }
                    if f & unmeasuredBits == 0 {
                        // ln of a Poisson count is biased low by about 1/(2N) (N photons,
                        // variance N plus the pedestal's noise): corrected per pixel so that
                        // photon-starved pixels of thick tissue average to the right value
                        // (docs/physics.md: the residual bias is under 0.002 from 12 counts on).
                        let rl = 1 / recordedLow, rh = 1 / recordedHigh
                        let ql = beforeLow / il, qh = beforeHigh / ih
                        var vl = (recordedLow + 1) * rl * rl * ql * ql
                        let vh = (recordedHigh + 1) * rh * rh * qh * qh
                        var own = 0.0
                        if mix > 0 {
                            let countsLow = (recordedLow + 1) * rl * rl * beforeLow * beforeLow
                            let countsHigh = (recordedHigh + 1) * rh * rh * beforeHigh * beforeHigh
                            vl = (countsLow + share * share * countsHigh) * unmix * unmix / (il * il)
                            // The two windows' covariance (added 2026-12-07).
                            own = -share * unmix * countsHigh / (il * ih)
                        }
                        // This channel's response onto the detector's mean: a scale.
                        let kl = sL[c], kh = sH[c]
                        varLow[c] = vl * kl * kl
                        varHigh[c] = vh * kh * kh
                        covLH[c] = own * kl * kh
                        low[c] = (lnL[c] - FastLogReference.ln(il) - vl / 2) * kl
                        high[c] = (lnH[c] - FastLogReference.ln(ih) - vh / 2) * kh
                        // The low window's square (added 2026-12-07), with its cross term.
                        if !squareLow.isEmpty {
                            let ownLow = lnL[c] - FastLogReference.ln(il) - vl / 2, ownHigh = lnH[c] - FastLogReference.ln(ih) - vh / 2
                            let b = crosses ? crossLow[c] : 0, q = squareLow[c]
                            low[c] = kl * ownLow + b * ownHigh + q * (ownLow * ownLow - vl)
                            let slope = kl + 2 * q * ownLow
                            varLow[c] = slope * slope * vl + b * b * vh + 2 * slope * b * own
                            covLH[c] = kh * (slope * own + b * vh)
                        // The low window's cross term (added 2026-12-06).
                        } else if crosses {
                            let b = crossLow[c]
                            low[c] += b * (lnH[c] - FastLogReference.ln(ih) - vh / 2)
                            varLow[c] += b * b * vh + 2 * kl * b * own
                            covLH[c] = kh * (kl * own + b * vh)
                        }
                    } else {
                        low[c] = .nan; high[c] = .nan; varLow[c] = .nan; varHigh[c] = .nan; covLH[c] = .nan
                    }
                    flagBits[c] = f
                }
            } } } } } } } } } }
        }
        func array(_ k: Int) -> [Double] { Array(UnsafeBufferPointer(start: out + k * n, count: n)) }
        let flags = [PixelFlags](unsafeUninitializedCapacity: n) { buffer, count in
            for c in 0..<n { buffer[c] = PixelFlags(rawValue: flagBits[c]) }
            count = n
        }
        return AttenuationLine(index: line.index, yUm: line.yUm, xUm: line.xUm, low: array(0), high: array(1),
                               transmissionLow: keepsTransmissions ? array(2) : [], transmissionHigh: keepsTransmissions ? array(3) : [],
                               transmissionVarianceLow: keepsTransmissions ? array(6) : [],
                               transmissionVarianceHigh: keepsTransmissions ? array(7) : [],
                               varianceLow: array(4), varianceHigh: array(5), flags: flags, exposure: exposure, covariance: array(8))
    }
}

extension Decomposer {
    func decomposeReference(_ a: AttenuationLine, memory: inout TissueMemory?) -> DecomposedLine {
        let n = a.channels
        guard n > 0, a.high.count == n, a.varianceLow.count == n, a.varianceHigh.count == n, a.flags.count == n,
              a.covariance.isEmpty || a.covariance.count == n else {
            let none = [Double](repeating: .nan, count: n)
            return DecomposedLine(index: a.index, yUm: a.yUm, xUm: a.xUm, bone: none, soft: none, fatFraction: none,
                                  isBone: [Bool](repeating: false, count: n), flags: a.flags)
        }
        // Scratch for the whole line in two blocks (the hot path allocates nothing per pixel).
        let scratch = UnsafeMutablePointer<Double>.allocate(capacity: 7 * n)
        defer { scratch.deallocate() }
        let marks = UnsafeMutablePointer<Bool>.allocate(capacity: 9 * n)
        defer { marks.deallocate() }
        let queue = UnsafeMutablePointer<Int>.allocate(capacity: max(n, 1))
        defer { queue.deallocate() }
        let ratio = scratch, su = scratch + n, sv = scratch + 2 * n, sr = scratch + 3 * n, eroded = scratch + 4 * n, baseline = scratch + 5 * n
        let sideHigh = scratch + 6 * n
        let tissue = marks, isBone = marks + n, covered = marks + 2 * n, usable = marks + 3 * n, plausible = marks + 4 * n
        let rejected = marks + 5 * n, confirmed = marks + 6 * n, found = marks + 7 * n, referable = marks + 8 * n
        var bone = [Double](repeating: .nan, count: n), soft = bone, fat = bone
        a.low.withUnsafeBufferPointer { low in a.high.withUnsafeBufferPointer { high in
        a.varianceLow.withUnsafeBufferPointer { varLow in a.varianceHigh.withUnsafeBufferPointer { varHigh in
        a.flags.withUnsafeBufferPointer { flags in
            guard let lowBase = low.baseAddress, let highBase = high.baseAddress else { return }
            for c in 0..<n {
                tissue[c] = flags[c].isMeasured && high[c] > airThreshold
                isBone[c] = false
            }
            // The body's (or a phantom's) edge is no tissue (`edgeWidth`): marked in
            // `covered`, free until the classification needs it.
            for c in 0..<n {
                var edge = false
                if tissue[c] {
                    for k in 1...max(1, edgeWidth) where (c - k >= 0 && !tissue[c - k]) || (c + k < n && !tissue[c + k]) { edge = true; break }
                }
                covered[c] = edge && edgeWidth > 0
            }
            for c in 0..<n {
                if covered[c] { tissue[c] = false }
                ratio[c] = tissue[c] ? low[c] / high[c] : .nan
            }
            // Classification: smooth, take the opened baseline, decompose against it.
            Self.smoothReference(lowBase, tissue, n, halfWidth: smoothing, into: su)
            Self.smoothReference(highBase, tissue, n, halfWidth: smoothing, into: sv)
            for c in 0..<n { sr[c] = tissue[c] && sv[c] > 0 ? su[c] / sv[c] : .nan }
            // The baseline opened in the fat model's terms (since 2026-12-07: the product's
            // change, copied here as written).
            for c in 0..<n { baseline[c] = sr[c].isFinite ? -fast.fatFraction(su[c], sv[c]) : .nan }
            Self.slidingExtremeReference(baseline, n, halfWidth: baselineHalfWidth, minimum: true, queue: queue, into: eroded)
            Self.slidingExtremeReference(eroded, n, halfWidth: baselineHalfWidth, minimum: false, queue: queue, into: baseline)
            for c in 0..<n where baseline[c].isFinite {
                baseline[c] = fast.tissueRatio(highAttenuation: sv[c], fat: min(1, max(-baseline[c], leanestTissue))) ?? .nan
            }
            // Noise of the smoothed bone signal: b ≈ (L_low − R·L_high)/k, k the bone's
            // sensitivity, here taken from the calibration at this pixel.
            let rootWindow = Double(2 * smoothing + 1).squareRoot()
            for c in 0..<n where tissue[c] && baseline[c].isFinite && sr[c] > baseline[c] {
                let r = baseline[c]
                let signal = su[c] - r * sv[c]
                guard signal > 0 else { continue }
                let b = fast.bone(su[c], sv[c], r)
                let sigma = max(0, varLow[c] + r * r * varHigh[c] - 2 * r * a.covariance(at: c)).squareRoot() * b / signal / rootWindow
                isBone[c] = b > max(boneThreshold, noiseSigmas * sigma)
            }
            Self.close(isBone, n, gap: 3)
            Self.dropShortRuns(isBone, n, shorterThan: 4)
            // Bone and the holes inside it (noisy bone pixels that fell under the threshold):
            // neither may serve as the soft-tissue reference.
            for c in 0..<n { covered[c] = isBone[c] }
            Self.close(covered, n, gap: holeWidth)
            // The references leave out the bone the previous line confirms (since 2026-12-07:
            // the product's change, copied here as written).
            if let m = memory, m.bone.count == n, let y = m.boneYUm, abs(Int64(y) - Int64(a.yUm)) <= Int64(TissueMemory.boneReachUm) {
                let reach = max(1, Int((abs(Int64(y) - Int64(a.yUm)) + Int64(pitchUm) - 1) / Int64(pitchUm)))
                for c in 0..<n { confirmed[c] = covered[c] && m.bone[max(0, c - reach)...min(n - 1, c + reach)].contains(true) }
            } else {
                for c in 0..<n { confirmed[c] = covered[c] }
            }
            for c in 0..<n { found[c] = covered[c] }
            // Soft tissue that can serve as a reference: not leaner than lean over the smoothing
            // window. Faint bone beside a run that the classification missed (its baseline
            // lifted onto bone where the run reaches the field's edge: the greater trochanter
            // under thin tissue beside a hip's neck) reads leaner than lean, and would carry
            // its bone under the run (the neck read up to 20 % low).
            for c in 0..<n { plausible[c] = tissue[c] && sv[c] > 0 && fast.fatFraction(su[c], sv[c]) >= leanestTissue }
            // Where the lean rule cuts into the noise, what the previous line did not set aside
            // stays a reference (since 2026-12-07: the product's change, copied as written).
            for c in 0..<n { referable[c] = plausible[c] }
            if let m = memory, m.lean.count == n, let y = m.boneYUm, abs(Int64(y) - Int64(a.yUm)) <= Int64(TissueMemory.boneReachUm) {
                let h = 1e-4, margin = -leanestTissue, window = Double(2 * smoothing + 1)
                let reach = max(1, Int((abs(Int64(y) - Int64(a.yUm)) + Int64(pitchUm) - 1) / Int64(pitchUm)))
                for c in 0..<n where !plausible[c] && tissue[c] && sv[c] > 0 {
                    if m.lean[max(0, c - reach)...min(n - 1, c + reach)].contains(true) { continue }
                    let du = (fast.fatFraction(su[c] + h, sv[c]) - fast.fatFraction(su[c] - h, sv[c])) / (2 * h)
                    let dv = (fast.fatFraction(su[c], sv[c] + h) - fast.fatFraction(su[c], sv[c] - h)) / (2 * h)
                    let sigma = (max(0, du * du * varLow[c] + dv * dv * varHigh[c] + 2 * du * dv * a.covariance(at: c)) / window).squareRoot()
                    referable[c] = noiseSigmas * sigma > margin && fast.fatFraction(su[c], sv[c]) >= leanestTissue - noiseSigmas * sigma
                }
            }
            // The soft tissue under bone (into `baseline`, no longer needed): the ratio
            // carried across each covered run from the tissue beside it.
            let softRatio = baseline
            for c in 0..<n { softRatio[c] = ratio[c] }
            carrySoftTissueRatio(ratio: ratio, high: highBase, tissue: referable, anyTissue: tissue, isBone: covered, excluded: confirmed, n,
                                 into: softRatio, sideHigh: sideHigh, rejected: rejected, memory: memory, yUm: a.yUm)
            // The soft-tissue reference of every other pixel (into `su`): the mean ratio of
            // the uncovered tissue around it, not its own ratio, so that its bone mineral is
            // measured against soft tissue too: noise around 0 where there is none, the bone
            // where classification missed some. ROI means are then unbiased by classification.
            // Bone the reference rules found beside a run (implausible or rejected) is no
            // reference for the pixels around it either: it is measured against the tissue
            // beyond it, and reads its bone.
            let localRatio = su
            for c in 0..<n { usable[c] = tissue[c] && !confirmed[c] && referable[c] && !rejected[c] }
            Self.smoothReference(ratio, usable, n, halfWidth: neighbours, into: localRatio)
            // Faint bone with no tissue within reach (a stretch the lean rule set aside between
            // two runs: a hip's neck on a row where the classification missed it) is measured as
            // bone, against the tissue the runs beside it were carried on, interpolated across
            // it; against its own ratio it read 0, and the neck showed a black line. (Carrying
            // again over the runs joined through it was tried: their windows moved onto faint
            // trochanter at the body's edge, and a neck row read 37 % low.)
            var k = 0
            while k < n {
                guard tissue[k] && !plausible[k] && !covered[k] && !localRatio[k].isFinite else { k += 1; continue }
                var end = k
                while end + 1 < n && tissue[end + 1] && !plausible[end + 1] && !covered[end + 1] && !localRatio[end + 1].isFinite { end += 1 }
                let left = k > 0 && covered[k - 1] && softRatio[k - 1].isFinite
                    ? SideReference(ratio: softRatio[k - 1], high: sideHigh[k - 1], at: Double(k - 1)) : nil
                let right = end + 1 < n && covered[end + 1] && softRatio[end + 1].isFinite
                    ? SideReference(ratio: softRatio[end + 1], high: sideHigh[end + 1], at: Double(end + 1)) : nil
                if left != nil || right != nil {
                    interpolate(left, right, over: k...end, into: softRatio, sideHigh: sideHigh)
                    for i in k...end { covered[i] = true }
                }
                k = end + 1
            }
            if memory?.ratio.count == n {
                for c in 0..<n where usable[c] && !found[c] && plausible[c] && ratio[c].isFinite {
                    let r = ratio[c]
                    let sigma = max(0, varLow[c] + r * r * varHigh[c] - 2 * r * a.covariance(at: c)).squareRoot() / high[c]
                    memory?.learn(at: c, ratio: r, high: high[c], sigma: sigma, noiseSigmas: noiseSigmas, yUm: a.yUm)
                }
                // Where this line's window was bone, the tissue remembered there stays in force
                // (it would otherwise expire after `reachUm` of such lines, and the bone become
                // the reference again).
                for c in 0..<n where rejected[c] && (memory?.ratio[c].isFinite ?? false) { memory?.yUm[c] = a.yUm }
                if (0..<n).contains(where: { tissue[$0] }) {
                    memory?.bone = (0..<n).map { tissue[$0] ? found[$0] : true }
                    memory?.lean = (0..<n).map { tissue[$0] ? !plausible[$0] : true }
                    memory?.boneYUm = a.yUm
                }
            }
            for c in 0..<n { usable[c] = tissue[c] && ratio[c].isFinite }
            bone.withUnsafeMutableBufferPointer { bone in soft.withUnsafeMutableBufferPointer { soft in fat.withUnsafeMutableBufferPointer { fat in
                for c in 0..<n where flags[c].isMeasured {
                    guard usable[c] else {
                        bone[c] = 0; soft[c] = 0
                        continue
                    }
                    let u = low[c], v = high[c]
                    if covered[c] {
                        var r = softRatio[c]
                        guard r.isFinite else { continue }
                        r = thicknessCorrected(ratio: r, sideHigh: sideHigh[c], u: u, v: v)
                        bone[c] = fast.unbiasedBone(u, v, r, varU: varLow[c], varV: varHigh[c], covUV: a.covariance(at: c))
                        soft[c] = fast.soft(u, v, r)
                    } else {
                        // Against the tissue around it; a pixel with no tissue around it has
                        // only its own ratio, against which it reads 0 (no bias to remove).
                        bone[c] = localRatio[c].isFinite
                            ? fast.unbiasedBone(u, v, localRatio[c], varU: varLow[c], varV: varHigh[c], covUV: a.covariance(at: c)) : fast.bone(u, v, ratio[c])
                        soft[c] = fast.soft(u, v, ratio[c])
                        fat[c] = min(1, max(0, fast.fatFraction(u, v)))
                    }
                }
            } } }
        } } } } }
        let boneMask = Array(UnsafeBufferPointer(start: isBone, count: n))
        return DecomposedLine(index: a.index, yUm: a.yUm, xUm: a.xUm, bone: bone, soft: soft, fatFraction: fat, isBone: boneMask, flags: a.flags)
    }
}

extension Calibration.FastBoneModel {
    /// `tissueRatio` as it was: the two roots in an array.
    func tissueRatioReference(highAttenuation v: Double, fat: Double) -> Double? {
        let a = f.3, b = f.1 + v * f.4, c = f.0 + v * (f.2 + v * f.5) - fat
        guard a != 0 else { return b < 0 ? -c / b : nil }
        let disc = b * b - 4 * a * c
        guard disc >= 0 else { return nil }
        let root = disc.squareRoot()
        for r in [(-b - root) / (2 * a), (-b + root) / (2 * a)] where r > 0 && 2 * a * r + b < 0 { return r }
        return nil
    }
}

extension Decomposer {
    // The running mean and the sliding extreme as they were.
    static func smoothReference(_ v: UnsafePointer<Double>, _ mask: UnsafePointer<Bool>, _ n: Int, halfWidth w: Int,
                       into out: UnsafeMutablePointer<Double>) {
        var sum = 0.0, count = 0
        for k in 0..<min(n, w) where mask[k] { sum += v[k]; count += 1 }
        for c in 0..<n {
            let entering = c + w, leaving = c - w - 1
            if entering < n, mask[entering] { sum += v[entering]; count += 1 }
            if leaving >= 0, mask[leaving] { sum -= v[leaving]; count -= 1 }
            out[c] = mask[c] && count > 0 ? sum / Double(count) : .nan
        }
    }

    static func slidingExtremeReference(_ v: UnsafePointer<Double>, _ n: Int, halfWidth w: Int, minimum: Bool,
                               queue: UnsafeMutablePointer<Int>, into out: UnsafeMutablePointer<Double>) {
        var head = 0, tail = 0, next = 0
        for c in 0..<n {
            while next < n && next <= c + w {
                let x = v[next]
                if !x.isNaN {
                    while tail > head && (minimum ? v[queue[tail - 1]] >= x : v[queue[tail - 1]] <= x) { tail -= 1 }
                    queue[tail] = next; tail += 1
                }
                next += 1
            }
            while tail > head && queue[head] < c - w { head += 1 }
            out[c] = tail > head && !v[c].isNaN ? v[queue[head]] : .nan
        }
    }
}
