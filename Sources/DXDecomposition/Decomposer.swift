import DXProtocol
import Foundation

/// One line decomposed: bone mineral and soft-tissue mass per pixel (g/cm²), fat fraction
/// where it can be measured (bone-free tissue), and which pixels are bone. Flagged pixels
/// carry NaN.
public struct DecomposedLine: Sendable {
    public var index: UInt32
    public var yUm: Int32
    public var xUm: Int32
    public var bone: [Double]
    public var soft: [Double]
    public var fatFraction: [Double]
    public var isBone: [Bool]
    public var flags: [PixelFlags]

    public init(index: UInt32, yUm: Int32, xUm: Int32, bone: [Double], soft: [Double], fatFraction: [Double], isBone: [Bool], flags: [PixelFlags]) {
        self.index = index; self.yUm = yUm; self.xUm = xUm; self.bone = bone; self.soft = soft; self.fatFraction = fatFraction
        self.isBone = isBone; self.flags = flags
    }
}

/// The decomposition of a line: classify bone against the soft tissue beside it, carry that
/// tissue's ratio under the bone, apply the calibration. A pure function of the line, the
/// calibration and the geometry, so a line is decomposed the moment it arrives.
///
/// Classification works in bone units, not in raw ratios, so that one threshold holds for
/// thin and thick patients alike: a pixel is bone where the calibrated bone mineral, taken
/// against the local soft-tissue baseline and smoothed over a few pixels, exceeds
/// `boneThreshold`. The baseline is the morphological opening of the smoothed tissue's fat
/// fraction as the calibration reads it (of its negative: a minimum then a maximum over a window
/// wider than any bone), which removes bone's dips (bone reads as leaner tissue) and keeps the
/// soft tissue's slow changes (fat varying across the body), whatever its thickness.
public struct Decomposer: Sendable {
    public let calibration: Calibration
    /// High-window attenuation below which a pixel is air.
    public var airThreshold = 0.05
    /// Bone mineral (g/cm², smoothed) above which a pixel is bone, at least; in photon-starved
    /// tissue the threshold rises to `noiseSigmas` standard deviations of the smoothed noise.
    public var boneThreshold = 0.15
    public var noiseSigmas = 3.0
    /// Half-width (pixels) of the smoothing before classification.
    public var smoothing = 3
    /// Half-width (pixels) of the baseline's opening: wider than half the widest bone.
    public var baselineHalfWidth: Int
    /// Soft-tissue pixels taken on each side of a run of bone for its ratio, and the
    /// half-width of the soft-tissue reference of a pixel outside bone.
    public var neighbours = 16
    /// Gaps in bone up to this many pixels are holes in it (8 mm), not soft tissue.
    public var holeWidth: Int
    /// The leanest soft tissue's fat fraction as the calibration's fat model reads it: pure lean
    /// (0) less the model's error (its fit residual is about 0.02 on the calibration steps,
    /// docs/physics.md): a baseline leaner than this has bone in it.
    public var leanestTissue = -0.05
    /// Tissue pixels this close (pixels) to air or to a pixel without a number are the edge of
    /// the body or of a phantom: a channel straddling the edge sees part air, and its
    /// neighbour the charge and scatter its bright neighbours share; their ratio is neither
    /// tissue's nor bone's. They are not tissue here: no reference, and no part of the
    /// baseline, whose opening spans most of a line: one such pixel read at a ratio of 1.14
    /// under tissue of 1.25 pulled the whole line's baseline under its bone on the second
    /// physics model, and an ESP phantom's vertebrae read 0 (docs/physics.md). One pixel:
    /// two fixed the phantom too but took the reference from thin hips at the body's edge
    /// (neck −1.92 % against −1.80 % over 50 patients).
    public var edgeWidth = 1

    let fast: Calibration.FastBoneModel

    /// The detector's channel pitch (µm): how far an edge may move across the channels between
    /// two lines (`TissueMemory.confirm`).
    public let pitchUm: Int

    /// `pitchUm`: the detector's channel pitch, to size the baseline window (±70 mm).
    public init(calibration: Calibration, pitchUm: Int = 1000) {
        self.calibration = calibration
        self.pitchUm = max(pitchUm, 1)
        fast = calibration.fastBoneModel
        baselineHalfWidth = max(8, 70_000 / max(pitchUm, 1))
        holeWidth = max(3, 8_000 / max(pitchUm, 1))
    }

    public func decompose(_ a: AttenuationLine) -> DecomposedLine {
        var none: TissueMemory?
        return decompose(a, memory: &none)
    }

    /// `decompose`, with the soft tissue the scan's earlier lines saw at each channel: a run of
    /// bone with no tissue beside it in its own line on one side (a hip's rows run in bone from
    /// the pubic ramus at the field's edge) takes that side's reference from the tissue seen
    /// there within `TissueMemory.reachUm` of this line. The memory is then brought up to date
    /// with this line's tissue. Lines taken in their order of arrival, live or from a capture,
    /// give the same numbers.
    public func decompose(_ a: AttenuationLine, memory: inout TissueMemory?) -> DecomposedLine {
        let n = a.channels
        guard n > 0, a.high.count == n, a.varianceLow.count == n, a.varianceHigh.count == n, a.flags.count == n,
              a.covariance.isEmpty || a.covariance.count == n else {
            let none = [Double](repeating: .nan, count: n)
            return DecomposedLine(index: a.index, yUm: a.yUm, xUm: a.xUm, bone: none, soft: none, fatFraction: none,
                                  isBone: [Bool](repeating: false, count: n), flags: a.flags)
        }
        // Scratch for the whole line in two blocks (the hot path allocates nothing per pixel).
        let scratch = UnsafeMutablePointer<Double>.allocate(capacity: 8 * n)
        defer { scratch.deallocate() }
        let marks = UnsafeMutablePointer<Bool>.allocate(capacity: 9 * n)
        defer { marks.deallocate() }
        let final = UnsafeMutablePointer<Double>.allocate(capacity: 5 * n)
        defer { final.deallocate() }
        let answer = UnsafeMutablePointer<PixelAnswer>.allocate(capacity: n)
        defer { answer.deallocate() }
        let queue = UnsafeMutablePointer<Int>.allocate(capacity: max(n, 1))
        defer { queue.deallocate() }
        let ratio = scratch, su = scratch + n, sv = scratch + 2 * n, sr = scratch + 3 * n, eroded = scratch + 4 * n, baseline = scratch + 5 * n
        let sideHigh = scratch + 6 * n, queued = scratch + 7 * n
        let tissue = marks, isBone = marks + n, covered = marks + 2 * n, usable = marks + 3 * n, plausible = marks + 4 * n
        let rejected = marks + 5 * n, confirmed = marks + 6 * n, found = marks + 7 * n, referable = marks + 8 * n
        var bone = [Double](repeating: .nan, count: n), soft = bone, fat = bone
        a.low.withUnsafeBufferPointer { low in a.high.withUnsafeBufferPointer { high in
        a.varianceLow.withUnsafeBufferPointer { varLow in a.varianceHigh.withUnsafeBufferPointer { varHigh in
        a.flags.withUnsafeBufferPointer { flags in
            guard let lowBase = low.baseAddress, let highBase = high.baseAddress,
                  let varLowBase = varLow.baseAddress, let varHighBase = varHigh.baseAddress else { return }
            // Each pixel's covariance of its two windows (0 where the line carries none).
            let cov = final + 4 * n
            for c in 0..<n { cov[c] = a.covariance(at: c) }
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
            Self.smooth(lowBase, tissue, n, halfWidth: smoothing, into: su)
            Self.smooth(highBase, tissue, n, halfWidth: smoothing, into: sv)
            for c in 0..<n { sr[c] = tissue[c] && sv[c] > 0 ? su[c] / sv[c] : .nan }
            // The baseline is opened in the fat model's terms, not in the ratio's: the ratio of
            // soft tissue falls as the tissue thickens (beam hardening), its fat fraction does
            // not (the fat model is fitted over the calibration's thickness steps). Where bone
            // fills most of the window (a hip's rows from the thin tissue at the body's side
            // through the trochanter and neck to the pelvis), an opening of the ratio kept the
            // thinnest tissue's ratio, higher than the thick tissue's under the neck, and the
            // neck went unfound: obese patients' necks read 1.4 % low with a tenth of the noise;
            // and under fat rising across the field (the tissue thickening with it) 9 % of the
            // tissue was called bone, 0.2 % now (docs/physics.md, "The neck's own bias"). Bone
            // reads as leaner tissue, so the opening removes dips of the fat fraction: it opens
            // its negative.
            // Each tissue pixel's fat fraction, kept for the lean rule below (in `sideHigh`, free
            // until the soft tissue is carried).
            let fatHere = sideHigh
            for c in 0..<n {
                fatHere[c] = sr[c].isFinite ? fast.fatFraction(su[c], sv[c]) : .nan
                baseline[c] = -fatHere[c]
            }
            Self.slidingExtreme(baseline, n, halfWidth: baselineHalfWidth, minimum: true, queue: queue, values: queued, into: eroded)
            Self.slidingExtreme(eroded, n, halfWidth: baselineHalfWidth, minimum: false, queue: queue, values: queued, into: baseline)
            // Bone wider than the opening's window lifts the baseline onto bone. No soft tissue is
            // leaner than lean: a baseline leaner than `leanestTissue` is bone's, and is held at
            // that tissue; none is fatter than fat (a fraction over 1 is noise's). The baseline's
            // ratio is the opened fat fraction's at the pixel's own high-window attenuation (NaN
            // where the fat model has no such ratio: the pixel is not classified).
            // Four at a time (the fat fractions and their ratios in `eroded`, free since the opening).
            let baselineFat = eroded
            for c in 0..<n { baselineFat[c] = baseline[c].isFinite ? min(1, max(-baseline[c], leanestTissue)) : .nan }
            fast.tissueRatios(n, high: sv, fat: baselineFat, into: eroded)
            for c in 0..<n where baseline[c].isFinite { baseline[c] = eroded[c] }
            // Noise of the smoothed bone signal: b ≈ (L_low − R·L_high)/k, k the bone's
            // sensitivity, here taken from the calibration at this pixel.
            // Every pixel's readings four at a time (into `final`, free until the polynomials at the
            // end), then the rule where it applies.
            let rootWindow = Double(2 * smoothing + 1).squareRoot()
            let signal = final, smoothedBone = final + n, smoothedSigma = final + 2 * n
            fast.classificationReadings(n, u: su, v: sv, r: baseline, varU: varLowBase, varV: varHighBase, covUV: cov, rootWindow: rootWindow,
                                        signal: signal, bone: smoothedBone, sigma: smoothedSigma)
            for c in 0..<n where tissue[c] && baseline[c].isFinite && sr[c] > baseline[c] && signal[c] > 0 {
                isBone[c] = smoothedBone[c] > max(boneThreshold, noiseSigmas * smoothedSigma[c])
            }
            Self.close(isBone, n, gap: 3)
            Self.dropShortRuns(isBone, n, shorterThan: 4)
            // Bone and the holes inside it (noisy bone pixels that fell under the threshold):
            // neither may serve as the soft-tissue reference.
            for c in 0..<n { covered[c] = isBone[c] }
            Self.close(covered, n, gap: holeWidth)
            // What the references leave out: the bone the previous line confirms. Tissue whose
            // noise went up is called bone in one line (12–18 % of it under lean 25–30 g/cm²)
            // but rarely at the same channels in the next (5–24 % of those pixels); left out of
            // the references it biased them towards the tissue whose noise went down. Bone is
            // bone in the next line too. Either way it is measured against the tissue carried
            // beside it (docs/physics.md, "Noise that the rules select").
            if let m = memory { m.confirm(covered, n, yUm: a.yUm, pitchUm: pitchUm, into: confirmed) } else { for c in 0..<n { confirmed[c] = covered[c] } }
            for c in 0..<n { found[c] = covered[c] }
            // Soft tissue that can serve as a reference: not leaner than lean over the smoothing
            // window. Faint bone beside a run that the classification missed (its baseline
            // lifted onto bone where the run reaches the field's edge: the greater trochanter
            // under thin tissue beside a hip's neck) reads leaner than lean, and would carry
            // its bone under the run (the neck read up to 20 % low).
            for c in 0..<n { plausible[c] = tissue[c] && sv[c] > 0 && fatHere[c] >= leanestTissue }
            // The lean rule judges each pixel by its own noisy fat fraction: where that noise
            // reaches the rule's margin (`leanestTissue`) within `noiseSigmas`, it sets aside
            // pure lean tissue whose noise went lean, and the references keep the tissue whose
            // noise went fat: bone measured against them read high under thick lean tissue
            // (lean 30 g/cm²: L1 +1.4 % on the first model, +5.9 % on the second's detector).
            // There, a pixel the rule sets aside by no more than that noise is still a reference
            // unless the previous line set it aside too (at the same channel or one beside it):
            // faint bone beside a run is there line after line, noise is not; and bone that
            // reads leaner still is bone (an oblique shaft's edge moves across the channels
            // from line to line). Where the noise is small beside the margin the rule is as it
            // was (docs/physics.md, "Noise that the rules select").
            if let m = memory, let reach = m.reach(channels: n, yUm: a.yUm, pitchUm: pitchUm) {
                let h = 1e-4, margin = -leanestTissue, window = Double(2 * smoothing + 1)
                // Whether the previous line set tissue aside within `reach` of each channel (into
                // `referable`, before it is written below at the same channel).
                let leanNear = referable
                m.lean.withUnsafeBufferPointer { lean in
                    if let base = lean.baseAddress { TissueMemory.dilate(base, n, within: reach, into: leanNear) }
                }
                for c in 0..<n {
                    let setAsideNear = leanNear[c]
                    referable[c] = plausible[c]
                    // (Leaving out the pixels of runs, and photon-starved ones, was tried after an
                    // outside review: the noise the rule selects is mostly theirs under lean 30,
                    // and the bias came back, +0.74 → +1.34 % on L1 at 2.5 times the exposure;
                    // docs/physics.md.)
                    guard !plausible[c], tissue[c], sv[c] > 0, !setAsideNear else { continue }
                    // The smoothed fat fraction's noise, through the fat model's slopes.
                    let du = (fast.fatFraction(su[c] + h, sv[c]) - fast.fatFraction(su[c] - h, sv[c])) / (2 * h)
                    let dv = (fast.fatFraction(su[c], sv[c] + h) - fast.fatFraction(su[c], sv[c] - h)) / (2 * h)
                    let sigma = (max(0, du * du * varLow[c] + dv * dv * varHigh[c] + 2 * du * dv * a.covariance(at: c)) / window).squareRoot()
                    referable[c] = noiseSigmas * sigma > margin && fatHere[c] >= leanestTissue - noiseSigmas * sigma
                }
            } else {
                for c in 0..<n { referable[c] = plausible[c] }
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
            Self.smooth(ratio, usable, n, halfWidth: neighbours, into: localRatio)
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
            // The memory is taken out of the caller's optional while it is brought up to date, so
            // that its arrays are this function's alone (no copy, no check of that per pixel).
            if var m = memory, m.ratio.count == n {
                memory = nil
                // The tissue remembered is what no run covers and the lean rule keeps, noisy or not
                // (bone not confirmed, or set aside by the rule in this line alone, is still not
                // remembered as tissue: a hip's shaft at the field's edge takes its reference from
                // the memory, and faint bone remembered there read it as tissue).
                let ratioSigma = final, learning = referable  // (no longer needed)
                fast.ratioNoise(n, ratio: ratio, high: highBase, varU: varLowBase, varV: varHighBase, covUV: cov, into: ratioSigma)
                for c in 0..<n { learning[c] = usable[c] && !found[c] && plausible[c] && ratio[c].isFinite }
                m.learn(n, taking: learning, ratio: ratio, high: highBase, sigma: ratioSigma, noiseSigmas: noiseSigmas, yUm: a.yUm)
                // Where this line's window was bone, the tissue remembered there stays in force
                // (it would otherwise expire after `reachUm` of such lines, and the bone become
                // the reference again).
                for c in 0..<n where rejected[c] && m.ratio[c].isFinite { m.yUm[c] = a.yUm }
                // What this line called bone and set aside, for the next line. A channel this line
                // has no tissue at (air, no beam, saturated, metal) counts as both, so that the
                // next line there is judged as before; a line with no tissue at all is passed
                // over (the 3 mm reach then runs from the line before it).
                if (0..<n).contains(where: { tissue[$0] }), m.bone.count == n, m.lean.count == n {
                    for c in 0..<n {
                        m.bone[c] = tissue[c] ? found[c] : true
                        m.lean[c] = tissue[c] ? !plausible[c] : true
                    }
                    m.boneYUm = a.yUm
                }
                memory = m
            }
            for c in 0..<n { usable[c] = tissue[c] && ratio[c].isFinite }
            // The calibration's polynomials, four pixels at a time (`FastBoneModelLanes`): first
            // each pixel's ratios (the soft tissue's under it for the bone, its own for the soft
            // tissue; which of the bone's two readings it takes), then every pixel's polynomials,
            // then each pixel's answer.
            let rBone = eroded, rSoft = queued
            let boneRead = final, unbiased = final + n, softRead = final + 2 * n, fatRead = final + 3 * n
            for c in 0..<n {
                rSoft[c] = ratio[c]
                rBone[c] = ratio[c]
                answer[c] = .none
                guard flags[c].isMeasured else { continue }
                guard usable[c] else { answer[c] = .nothing; continue }
                if covered[c] {
                    let r = softRatio[c]
                    guard r.isFinite else { continue }
                    // Under bone: against the tissue carried under it, moved to its thickness.
                    rBone[c] = thicknessCorrected(ratio: r, sideHigh: sideHigh[c], u: low[c], v: high[c])
                    rSoft[c] = rBone[c]
                    answer[c] = .underBone
                } else if localRatio[c].isFinite {
                    // Against the tissue around it.
                    rBone[c] = localRatio[c]
                    answer[c] = .besideTissue
                } else {
                    // No tissue around it: only its own ratio, against which it reads 0 (no bias
                    // to remove).
                    answer[c] = .ownRatio
                }
            }
            fast.evaluate(n, u: lowBase, v: highBase, rBone: rBone, rSoft: rSoft, varU: varLowBase, varV: varHighBase, covUV: cov,
                          bone: boneRead, unbiased: unbiased, soft: softRead, fat: fatRead)
            bone.withUnsafeMutableBufferPointer { bone in soft.withUnsafeMutableBufferPointer { soft in fat.withUnsafeMutableBufferPointer { fat in
                for c in 0..<n {
                    switch answer[c] {
                    case .none: break
                    case .nothing: bone[c] = 0; soft[c] = 0
                    case .underBone: bone[c] = unbiased[c]; soft[c] = softRead[c]
                    case .besideTissue, .ownRatio:
                        bone[c] = answer[c] == .ownRatio ? boneRead[c] : unbiased[c]
                        soft[c] = softRead[c]
                        fat[c] = min(1, max(0, fatRead[c]))
                    }
                }
            } } }
        } } } } }
        let boneMask = Array(UnsafeBufferPointer(start: isBone, count: n))
        return DecomposedLine(index: a.index, yUm: a.yUm, xUm: a.xUm, bone: bone, soft: soft, fatFraction: fat, isBone: boneMask, flags: a.flags)
    }

    /// The carried ratio moved to the thickness of the tissue under the bone. Beam hardening
    /// makes a tissue's ratio fall as it thickens; the tissue beside a bone is often thinner
    /// (a hip's lateral side, where the body narrows) and a ratio carried from it alone reads
    /// the bone low. The correction is the calibration's own fat model (fitted over the
    /// calibration phantom's thickness steps): the ratio of tissue of the side's fat fraction at
    /// the pixel's tissue mass, less that model's ratio at the side's, added to the measured
    /// ratio (so the model's level cancels and only its slope with thickness enters). Twice,
    /// as the tissue mass depends on the ratio. Unchanged where the model has no answer.
    @inline(__always)
    func thicknessCorrected(ratio r0: Double, sideHigh vSide: Double, u: Double, v: Double) -> Double {
        guard vSide.isFinite, vSide > 0, v > 0 else { return r0 }
        let fat = fast.fatFraction(r0 * vSide, vSide)
        let sideMass = fast.soft(r0 * vSide, vSide, r0)
        guard fat.isFinite, sideMass > 0, let rSide = fast.tissueRatio(highAttenuation: vSide, fat: fat) else { return r0 }
        var r = r0
        for _ in 0..<2 {
            let mass = fast.soft(u, v, r)
            guard mass > 0, let rHere = fast.tissueRatio(highAttenuation: vSide * mass / sideMass, fat: fat) else { return r0 }
            r = r0 + (rHere - rSide)
        }
        return r.isFinite ? r : r0
    }

    /// The soft tissue under bone: the ratio interpolated across each run of bone from the
    /// tissue pixels on either side (two pixels next to the edge skipped: they may hold a
    /// little bone). A run with no soft tissue beside it gets NaN: not measurable.
    /// `tissue`: the pixels that may be a reference (plausible tissue); `anyTissue`: every
    /// pixel with tissue, the last resort when neither side of a run has plausible tissue in
    /// this line or the earlier ones (a run is not left without a number where it had one
    /// before the plausibility rule). `isBone`: the runs; `excluded`: what the side windows leave
    /// out (the runs' bone that the previous line confirms; all of it by default).
    func carrySoftTissueRatio(ratio: UnsafePointer<Double>, high: UnsafePointer<Double>, tissue: UnsafePointer<Bool>, anyTissue: UnsafePointer<Bool>,
                              isBone: UnsafePointer<Bool>, excluded: UnsafePointer<Bool>? = nil, _ n: Int, into softRatio: UnsafeMutablePointer<Double>,
                              sideHigh: UnsafeMutablePointer<Double>, rejected: UnsafeMutablePointer<Bool>, memory: TissueMemory? = nil,
                              yUm: Int32 = 0) {
        // Whether a side window's mean reads as bone against a reference tissue (moved to the
        // window's thickness): over `boneThreshold`.
        func readsAsBone(_ w: SideReference, against ref: SideReference) -> Bool {
            let u = w.ratio * w.high, v = w.high
            let r = thicknessCorrected(ratio: ref.ratio, sideHigh: ref.high, u: u, v: v)
            let b = fast.bone(u, v, r)
            return b.isFinite && b > boneThreshold
        }
        for c in 0..<n { rejected[c] = false }
        let out = excluded ?? isBone
        func mean(from: Int, to: Int, in mask: UnsafePointer<Bool>? = nil) -> SideReference? {
            let m = mask ?? tissue
            var s = 0.0, h = 0.0, x = 0.0, k = 0
            var i = from
            while i < to {
                if m[i] && !out[i] { s += ratio[i]; h += high[i]; x += Double(i); k += 1 }
                i += 1
            }
            return k > 0 ? SideReference(ratio: s / Double(k), high: h / Double(k), at: x / Double(k)) : nil
        }
        // The earlier lines' tissue over the same channels, when this line has none there.
        func remembered(from: Int, to: Int, atLeast minimum: Int = 1) -> SideReference? {
            guard let m = memory, m.ratio.count == n else { return nil }
            var s = 0.0, h = 0.0, x = 0.0, k = 0
            var i = from
            while i < to {
                if m.ratio[i].isFinite && abs(Int64(m.yUm[i]) - Int64(yUm)) <= Int64(TissueMemory.reachUm) { s += m.ratio[i]; h += m.high[i]; x += Double(i); k += 1 }
                i += 1
            }
            return k >= max(minimum, 1) ? SideReference(ratio: s / Double(k), high: h / Double(k), at: x / Double(k)) : nil
        }
        for c in 0..<n { sideHigh[c] = .nan }
        var c = 0
        while c < n {
            guard isBone[c] else { c += 1; continue }
            var end = c
            while end + 1 < n && isBone[end + 1] { end += 1 }
            let leftWindow = (max(0, c - 2 - neighbours), max(0, c - 2)), rightWindow = (min(n, end + 3), min(n, end + 3 + neighbours))
            var left = mean(from: leftWindow.0, to: leftWindow.1)
            var right = mean(from: rightWindow.0, to: rightWindow.1)
            // Bone beside the run that neither the classification nor the lean rule caught (the
            // pelvis faint beside a hip's head under fatty tissue) reads as bone against the
            // tissue the earlier lines saw over the same channels: that tissue is the reference,
            // and this line's window is not remembered as tissue.
            if let l = left, let m = remembered(from: leftWindow.0, to: leftWindow.1), readsAsBone(l, against: m) {
                left = m
                for i in leftWindow.0..<leftWindow.1 { rejected[i] = true }
            }
            if let r = right, let m = remembered(from: rightWindow.0, to: rightWindow.1), readsAsBone(r, against: m) {
                right = m
                for i in rightWindow.0..<rightWindow.1 { rejected[i] = true }
            }
            // No tissue beside the run in this line: the tissue earlier lines saw beside it, or,
            // where the run reaches the field's edge, over its own first (last) channels.
            if left == nil {
                left = remembered(from: leftWindow.0, to: leftWindow.1)
                    ?? (leftWindow.0 == leftWindow.1 ? remembered(from: c, to: min(end + 1, c + neighbours)) : nil)
            }
            if right == nil {
                right = remembered(from: rightWindow.0, to: rightWindow.1)
                    ?? (rightWindow.0 == rightWindow.1 ? remembered(from: max(c, end + 1 - neighbours), to: end + 1) : nil)
            }
            // Neither side has plausible tissue, in this line or the earlier ones: the tissue
            // the rule set aside, rather than no number. One side is enough otherwise (the side
            // set aside was bone: the neck of seed 5 read −5.6 % with it, −1.1 % without).
            if left == nil && right == nil {
                left = mean(from: leftWindow.0, to: leftWindow.1, in: anyTissue)
                right = mean(from: rightWindow.0, to: rightWindow.1, in: anyTissue)
            }
            // A run far longer than its reference windows (a hip's row from the trochanter at
            // the body's edge through the neck and head to the pelvis) is not one straight line
            // of tissue under it: where the earlier lines saw tissue over its own channels (at
            // least half of a window of `neighbours`, every `neighbours` channels), that tissue
            // anchors the reference inside it, and the reference runs straight between anchors.
            // Across 137 channels from the thin tissue at a hip's lateral edge, a neck's rows
            // read 14–28 % low (seed 42 of the hip study; docs/analysis.md).
            if end - c + 1 > 4 * neighbours, memory != nil {
                var anchors: [(at: Int, ref: SideReference)] = []
                let sides = (left.flatMap(tissue(of:)), right.flatMap(tissue(of:)))  // once for every anchor
                if let l = left { anchors.append((c - 1, l)) }
                var k = c + neighbours
                while k + neighbours <= end {
                    // An anchor that reads as bone against the straight line between the run's
                    // ends held faint bone in an earlier line (the trochanter at a thin body's
                    // edge): not an anchor.
                    // (Where the fat model has no ratio, the ratios' straight line: a NaN would
                    // read as no bone and let a bony anchor in.)
                    let straight = between(left, right, at: Double(k), tissues: sides).flatMap { $0.ratio.isNaN ? between(left, right, at: Double(k), tissues: (nil, nil)) : $0 }
                    if let a = remembered(from: k - neighbours / 2, to: k + neighbours / 2 + 1, atLeast: neighbours / 2),
                       !(straight.map { readsAsBone(a, against: $0) } ?? false) {
                        anchors.append((k, a))
                    }
                    k += neighbours
                }
                if let r = right { anchors.append((end + 1, r)) }
                if anchors.count >= 2 {
                    for (a, b) in zip(anchors, anchors.dropFirst()) {
                        let from = max(c, a.at + 1), to = min(end, b.at - 1)
                        if from <= to { interpolate(a.ref, b.ref, over: from...to, into: softRatio, sideHigh: sideHigh) }
                        if b.at >= c && b.at <= end { softRatio[b.at] = b.ref.ratio; sideHigh[b.at] = b.ref.high }
                    }
                    if let first = anchors.first, first.at > c { interpolate(first.ref, nil, over: c...(first.at - 1), into: softRatio, sideHigh: sideHigh) }
                    if let last = anchors.last, last.at < end { interpolate(last.ref, nil, over: (last.at + 1)...end, into: softRatio, sideHigh: sideHigh) }
                    c = end + 1
                    continue
                }
            }
            interpolate(left, right, over: c...end, into: softRatio, sideHigh: sideHigh)
            c = end + 1
        }
    }

    /// The soft tissue across a run, between the references on its two sides, each taken at the
    /// place it was measured (the mean channel of its window's pixels); one side's where only
    /// one is known, NaN where neither is.
    func interpolate(_ left: SideReference?, _ right: SideReference?, over run: ClosedRange<Int>,
                     into softRatio: UnsafeMutablePointer<Double>, sideHigh: UnsafeMutablePointer<Double>) {
        let sides = (left.flatMap(tissue(of:)), right.flatMap(tissue(of:)))
        for k in run {
            let v = between(left, right, at: Double(k), tissues: sides)
            softRatio[k] = v?.ratio ?? .nan
            if let v { sideHigh[k] = v.high }
        }
        // One rule for the whole run: where the fat model has no ratio for a pixel inside it
        // (its quadratic can lose its root between two sides that have one), the run takes the
        // straight line of the ratios throughout, so that no pixel steps off its neighbours.
        if left != nil, right != nil, run.contains(where: { softRatio[$0].isNaN }) {
            for k in run {
                let v = between(left, right, at: Double(k), tissues: (nil, nil))
                softRatio[k] = v?.ratio ?? .nan
                if let v { sideHigh[k] = v.high }
            }
        }
    }

    /// A side's tissue in the fat model's terms: its mass (g/cm², lean and fat) and the fat's;
    /// nil where the model does not give the side its own ratio back (no root, or the other
    /// root of its quadratic; within 1e-6, as the root's formula loses about √ε to cancellation
    /// where the model is nearly linear), so that the reference never jumps at a run's side.
    func tissue(of side: SideReference) -> (mass: Double, fat: Double)? {
        let u = side.ratio * side.high
        let mass = fast.soft(u, side.high, side.ratio), fraction = fast.fatFraction(u, side.high)
        // Tissue between lean and fat (with room for a window's noise), of a mass a body has.
        guard mass > 0, mass < 100, fraction >= -0.25, fraction <= 1.25,
              let back = fast.tissueRatio(highAttenuation: side.high, fat: fraction), abs(back - side.ratio) <= 1e-6 * max(1, abs(side.ratio)) else { return nil }
        return (mass, mass * fraction)
    }

    /// The reference at channel `x` between `left` and `right`; one side's where only one is
    /// known. What runs straight across the field is the tissue, not its ratio: each side's fat
    /// fraction, weighted by its mass (through the calibration's soft-tissue and fat models, which
    /// give each side back its own ratio), is joined straight from where they were measured, with
    /// the high window's attenuation, and the ratio is the fat model's for that fat fraction at
    /// that attenuation. The ratio itself
    /// is curved wherever the tissue's thickness changes (lean 15 g/cm² with fat 0 → 6 across
    /// the field: (A + B·f)/(C + D·f), a curve even at one energy); joined straight from the
    /// run's edges (until 2026-12-07), though a window's mean lies `2 + neighbours / 2` channels
    /// beyond them, the ESP's vertebrae under a fat gradient read 0.004–0.009 g/cm² low
    /// (docs/physics.md, "The references at their places"). Where the fat model has no answer
    /// for a side the ratio is joined straight between the sides' places.
    func between(_ left: SideReference?, _ right: SideReference?, at x: Double,
                 tissues: ((mass: Double, fat: Double)?, (mass: Double, fat: Double)?)? = nil) -> SideReference? {
        switch (left, right) {
        case let (l?, r?):
            let span = r.at - l.at
            // Within the two places only (a side taken from the run's own first channels, at
            // the field's edge, lies inside the run: no extrapolation beyond it).
            let t = span > 1e-9 ? min(1, max(0, (x - l.at) / span)) : 0.5
            let high = l.high + (r.high - l.high) * t, straight = l.ratio + (r.ratio - l.ratio) * t
            let (tl, tr) = tissues ?? (tissue(of: l), tissue(of: r))
            guard let tl, let tr, high > 0 else { return SideReference(ratio: straight, high: high, at: x) }
            let mass = tl.mass + (tr.mass - tl.mass) * t, fat = tl.fat + (tr.fat - tl.fat) * t
            // NaN where the model has no ratio here: `interpolate` then takes the straight line
            // for the whole run.
            let ratio = fast.tissueRatio(highAttenuation: high, fat: fat / mass) ?? .nan
            return SideReference(ratio: ratio, high: high, at: x)
        case let (l?, nil): return l
        case let (nil, r?): return r
        default: return nil
        }
    }

    /// Running mean over ±halfWidth of the pixels in `mask`; NaN where the pixel is not in it.
    static func smooth(_ v: UnsafePointer<Double>, _ mask: UnsafePointer<Bool>, _ n: Int, halfWidth w: Int,
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

    /// Sliding minimum or maximum over ±halfWidth with a monotonic queue: O(n). NaN values
    /// are skipped; a window of NaN gives NaN; a NaN input pixel stays NaN (so erosion then
    /// dilation is a morphological opening of the tissue pixels: bumps narrower than the
    /// window go, slopes stay).
    static func slidingExtreme(_ v: UnsafePointer<Double>, _ n: Int, halfWidth w: Int, minimum: Bool,
                               queue: UnsafeMutablePointer<Int>, into out: UnsafeMutablePointer<Double>) {
        let values = UnsafeMutablePointer<Double>.allocate(capacity: max(n, 1))
        defer { values.deallocate() }
        slidingExtreme(v, n, halfWidth: w, minimum: minimum, queue: queue, values: values, into: out)
    }

    /// `slidingExtreme` with the queue's values in scratch of the caller's (`n` doubles).
    static func slidingExtreme(_ v: UnsafePointer<Double>, _ n: Int, halfWidth w: Int, minimum: Bool,
                               queue: UnsafeMutablePointer<Int>, values: UnsafeMutablePointer<Double>, into out: UnsafeMutablePointer<Double>) {
        if minimum {
            slidingExtreme(v, n, halfWidth: w, queue: queue, values: values, into: out) { $0 >= $1 }
        } else {
            slidingExtreme(v, n, halfWidth: w, queue: queue, values: values, into: out) { $0 <= $1 }
        }
    }

    /// The monotonic queue, specialised for one comparison (`dominated(kept, entering)`: the
    /// kept value can never again be the window's extreme) and with each entry's value beside
    /// its index, so that the comparisons read no pixel through the queue (issue 18: the same
    /// values as before, in the same order).
    @inline(__always)
    static func slidingExtreme(_ v: UnsafePointer<Double>, _ n: Int, halfWidth w: Int, queue: UnsafeMutablePointer<Int>,
                               values: UnsafeMutablePointer<Double>, into out: UnsafeMutablePointer<Double>,
                               dominated: (Double, Double) -> Bool) {
        var head = 0, tail = 0, next = 0
        for c in 0..<n {
            while next < n && next <= c &+ w {
                let x = v[next]
                if !x.isNaN {
                    while tail > head && dominated(values[tail &- 1], x) { tail &-= 1 }
                    queue[tail] = next
                    values[tail] = x
                    tail &+= 1
                }
                next &+= 1
            }
            while tail > head && queue[head] < c &- w { head &+= 1 }
            out[c] = tail > head && !v[c].isNaN ? values[head] : .nan
        }
    }

    /// Fills runs of false no longer than `gap` that lie between trues.
    static func close(_ mask: UnsafeMutablePointer<Bool>, _ n: Int, gap: Int) {
        var i = 0
        while i < n {
            if !mask[i], i > 0, mask[i - 1] {
                var j = i
                while j < n && !mask[j] { j += 1 }
                if j < n && j - i <= gap { for k in i..<j { mask[k] = true } }
                i = j
            } else { i += 1 }
        }
    }

    static func dropShortRuns(_ mask: UnsafeMutablePointer<Bool>, _ n: Int, shorterThan length: Int) {
        var i = 0
        while i < n {
            guard mask[i] else { i += 1; continue }
            var j = i
            while j < n && mask[j] { j += 1 }
            if j - i < length { for k in i..<j { mask[k] = false } }
            i = j
        }
    }
}

/// BMD over a region (ICD §8: the mean hydroxyapatite areal density over the ROI), and how
/// far it can be trusted: which of its pixels were photon-starved (measured, and counted in the
/// mean), which carried no number (saturated, no photons, no beam: left out), and whether lines
/// through it were missing.
public struct ROIResult: Sendable, Equatable, Codable {
    public var name: String
    public var bmdGcm2: Double
    public var areaCm2: Double
    public var bmcG: Double
    /// Pixels in the mean.
    public var pixels: Int
    /// Of those, pixels under 25 counts above dark in a window: measured with the low-count
    /// correction and included (leaving them out biases the mean).
    public var lowCountPixels: Int
    /// Pixels inside the ROI that carry no number and are not in the mean.
    public var unmeasuredPixels: Int
    /// Lines of the scan that fall in the ROI but never arrived (lost frames, a cut scan).
    public var missingLines: Int
    /// False when lines are missing or unmeasured pixels make up more than 1 % of the ROI: the
    /// BMD is over part of the region only.
    public var complete: Bool

    public enum CodingKeys: String, CodingKey {
        case name, pixels, complete
        case bmdGcm2 = "bmd_g_cm2", areaCm2 = "area_cm2", bmcG = "bmc_g"
        case lowCountPixels = "low_count_pixels", unmeasuredPixels = "unmeasured_pixels", missingLines = "missing_lines"
    }

    public init(name: String, bmdGcm2: Double, areaCm2: Double, bmcG: Double, pixels: Int,
                lowCountPixels: Int = 0, unmeasuredPixels: Int = 0, missingLines: Int = 0) {
        self.name = name; self.bmdGcm2 = bmdGcm2; self.areaCm2 = areaCm2; self.bmcG = bmcG; self.pixels = pixels
        self.lowCountPixels = lowCountPixels; self.unmeasuredPixels = unmeasuredPixels; self.missingLines = missingLines
        complete = Self.isComplete(pixels: pixels, unmeasured: unmeasuredPixels, missingLines: missingLines)
    }

    /// The share of unmeasured pixels an ROI may have and still count as complete.
    public static let unmeasuredTolerance = 0.01

    static func isComplete(pixels: Int, unmeasured: Int, missingLines: Int) -> Bool {
        missingLines == 0 && pixels > 0 && Double(unmeasured) <= unmeasuredTolerance * Double(pixels + unmeasured)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        pixels = try c.decode(Int.self, forKey: .pixels)
        bmdGcm2 = try c.decodeIfPresent(Double.self, forKey: .bmdGcm2) ?? .nan
        areaCm2 = try c.decode(Double.self, forKey: .areaCm2)
        bmcG = try c.decodeIfPresent(Double.self, forKey: .bmcG) ?? .nan
        // Results stored before these fields existed: nothing was counted.
        lowCountPixels = try c.decodeIfPresent(Int.self, forKey: .lowCountPixels) ?? 0
        unmeasuredPixels = try c.decodeIfPresent(Int.self, forKey: .unmeasuredPixels) ?? 0
        missingLines = try c.decodeIfPresent(Int.self, forKey: .missingLines) ?? 0
        complete = try c.decodeIfPresent(Bool.self, forKey: .complete)
            ?? Self.isComplete(pixels: pixels, unmeasured: unmeasuredPixels, missingLines: missingLines)
    }

    /// An ROI with no measurable pixel has no BMD: null in JSON, never NaN.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(pixels, forKey: .pixels)
        try c.encode(bmdGcm2.isFinite ? bmdGcm2 : nil, forKey: .bmdGcm2)
        try c.encode(areaCm2, forKey: .areaCm2)
        try c.encode(bmcG.isFinite ? bmcG : nil, forKey: .bmcG)
        try c.encode(lowCountPixels, forKey: .lowCountPixels)
        try c.encode(unmeasuredPixels, forKey: .unmeasuredPixels)
        try c.encode(missingLines, forKey: .missingLines)
        try c.encode(complete, forKey: .complete)
    }
}

/// Accumulates decomposed lines into ROI means as they arrive. Every measured pixel inside the
/// ROI enters the mean, photon-starved ones included (its bone mineral is taken against the
/// soft-tissue reference whatever its class, so neither noise nor classification biases it).
public struct ROIAccumulator: Sendable {
    public let roi: Phantom.ROI
    public let geometry: ScanGeometry
    private var sum = 0.0
    private var count = 0
    private var lowCount = 0
    private var unmeasured = 0

    public init(roi: Phantom.ROI, geometry: ScanGeometry) { self.roi = roi; self.geometry = geometry }

    /// The ROI's extent across and along the table (µm, half-open), nil for a malformed ROI.
    var bounds: (x0: Double, x1: Double, y0: Int32, y1: Int32)? {
        guard roi.xUm.count == 2, roi.yUm.count == 2 else { return nil }
        return (Double(min(roi.xUm[0], roi.xUm[1])), Double(max(roi.xUm[0], roi.xUm[1])),
                min(roi.yUm[0], roi.yUm[1]), max(roi.yUm[0], roi.yUm[1]))
    }

    /// Whether a line at `yUm` passes through the ROI.
    public func contains(yUm y: Int32) -> Bool {
        guard let b = bounds else { return false }
        return y >= b.y0 && y < b.y1
    }

    public mutating func add(_ line: DecomposedLine) {
        guard let b = bounds, line.yUm >= b.y0 && line.yUm < b.y1 else { return }
        for c in 0..<line.bone.count {
            let x = geometry.x(ofChannel: c, carriageX: line.xUm)
            guard x >= b.x0 && x < b.x1 else { continue }
            if line.bone[c].isFinite {
                sum += line.bone[c]; count += 1
                if line.flags[c].contains(.photonStarved) { lowCount += 1 }
            } else {
                unmeasured += 1
            }
        }
    }

    /// The result, with `missingLines` lines through the ROI known to be missing.
    public func result(missingLines: Int = 0) -> ROIResult {
        let bmd = count > 0 ? sum / Double(count) : .nan
        let area = bounds.map { ($0.x1 - $0.x0) * (Double($0.y1) - Double($0.y0)) / 1e8 } ?? 0
        return ROIResult(name: roi.name, bmdGcm2: bmd, areaCm2: area, bmcG: bmd * area, pixels: count,
                         lowCountPixels: lowCount, unmeasuredPixels: unmeasured, missingLines: missingLines)
    }

    public var result: ROIResult { result() }
}

/// Which of the calibration's readings a pixel's numbers are (`Decomposer.decompose`).
enum PixelAnswer: UInt8 {
    /// No number (not measured, or bone with no tissue to carry under it): NaN.
    case none
    /// Air or a pixel without tissue: 0.
    case nothing
    /// Bone (or a hole in it) against the soft tissue carried under it.
    case underBone
    /// Tissue against the tissue around it; its fat fraction too.
    case besideTissue
    /// Tissue with no tissue around it, against its own ratio; its fat fraction too.
    case ownRatio
}

/// A soft-tissue reference beside a run of bone: the mean tissue ratio and high-window
/// attenuation of a window's pixels, and the place they were measured (their mean channel).
struct SideReference {
    var ratio: Double
    var high: Double
    var at: Double
}

/// The soft tissue a scan's lines saw at each channel most recently (its ratio L_low/L_high and
/// high-window attenuation, and the line's y): the reference a bone run takes on a side where
/// its own line has none (`Decomposer.decompose(_:memory:)`).
public struct TissueMemory: Sendable, Equatable {
    /// How far along the scan a remembered tissue still serves (µm): 25 mm.
    public static let reachUm: Int32 = 25_000
    /// The length along the scan (µm) over which the remembered tissue is averaged: 4 mm.
    /// What a long run is anchored on is the memory of a window of channels; one line's pixels
    /// alone carried their photon noise into every row anchored on them, the same offset row
    /// after row (a hip's neck under 34 g/cm² of tissue read up to 4.3 % off the neck read
    /// against the tissue's true ratio; docs/physics.md, "The memory averaged").
    public static let averagedOverUm = 4_000.0

    /// The weight of a line's tissue against what is remembered from the line at `previous`
    /// (the last line the memory took tissue from there): the distance between them over
    /// `averagedOverUm`, at least 1/16 (a line at the same place still counts) and at most 1
    /// (a line 4 mm or more from the last one replaces it). At 1 mm a quarter: an exponential
    /// mean whose weights fall to 1/e over about 3.5 mm, as noisy as the mean of 7 lines; at
    /// 0.5 mm an eighth (about 3.7 mm, 15 lines).
    @inline(__always)
    static func weight(ofLineAt y: Int32, after previous: Int32) -> Double {
        min(1, max(1.0 / 16, Double(abs(Int64(y) - Int64(previous))) / averagedOverUm))
    }
    /// Channel `c`'s tissue of the line at `y`: ratio `r`, high-window attenuation `v`, the
    /// ratio's noise `sigma`, averaged into what is remembered with `weight(ofLineAt:after:)`.
    /// Bone only raises the ratio: tissue reading lower than what is remembered by more than
    /// `noiseSigmas` of its own noise says the memory learnt faint bone, and replaces it.
    mutating func learn(at c: Int, ratio r: Double, high v: Double, sigma: Double, noiseSigmas: Double, yUm y: Int32) {
        (ratio[c], high[c]) = Self.learnt(ratio: ratio[c], high: high[c], sampledYUm: sampledYUm[c], r, v, sigma: sigma, noiseSigmas: noiseSigmas, yUm: y)
        yUm[c] = y
        sampledYUm[c] = y
    }

    /// `learn(at:...)` for every channel of an `n`-channel line where `take` holds, through
    /// pointers (the same numbers; no copy or bounds check per pixel).
    mutating func learn(_ n: Int, taking take: UnsafePointer<Bool>, ratio r: UnsafePointer<Double>, high v: UnsafePointer<Double>,
                        sigma: UnsafePointer<Double>, noiseSigmas: Double, yUm y: Int32) {
        guard ratio.count == n, high.count == n, yUm.count == n, sampledYUm.count == n else { return }
        ratio.withUnsafeMutableBufferPointer { ratio in high.withUnsafeMutableBufferPointer { high in
        yUm.withUnsafeMutableBufferPointer { yUm in sampledYUm.withUnsafeMutableBufferPointer { sampled in
            for c in 0..<n where take[c] {
                (ratio[c], high[c]) = Self.learnt(ratio: ratio[c], high: high[c], sampledYUm: sampled[c], r[c], v[c], sigma: sigma[c],
                                                  noiseSigmas: noiseSigmas, yUm: y)
                yUm[c] = y
                sampled[c] = y
            }
        } } } }
    }

    /// What a channel remembers (ratio, high-window attenuation) after the tissue `r`, `v` of
    /// noise `sigma` at `y` is averaged into it (`learn`).
    @inline(__always)
    static func learnt(ratio old: Double, high oldHigh: Double, sampledYUm: Int32, _ r: Double, _ v: Double, sigma: Double, noiseSigmas: Double,
                       yUm y: Int32) -> (Double, Double) {
        var w = weight(ofLineAt: y, after: sampledYUm)
        if !old.isFinite || !oldHigh.isFinite || old - r > noiseSigmas * sigma { w = 1 }
        return (old.isFinite ? old + w * (r - old) : r, oldHigh.isFinite ? oldHigh + w * (v - oldHigh) : v)
    }

    /// How far the line whose bone confirms this line's may lie (µm): 3 mm, two or three lines
    /// of every protocol (a line lost in between does not break the confirmation; more do).
    public static let boneReachUm: Int32 = 3_000
    public var ratio: [Double]
    public var high: [Double]
    /// The y of the line whose tissue is still in force at each channel (kept fresh where a
    /// later line's window there was bone: `reachUm` runs from it).
    public var yUm: [Int32]
    /// The y of the last line the memory took tissue from at each channel (what the next
    /// line's weight is measured from; `yUm` may have been kept fresh since).
    public var sampledYUm: [Int32]
    /// The bone the previous line found (its runs and their holes), and that line's y; nil
    /// before the first line.
    public var bone: [Bool]
    public var lean: [Bool]
    public var boneYUm: Int32?

    public init(channels: Int) {
        ratio = [Double](repeating: .nan, count: max(0, channels))
        high = ratio
        yUm = [Int32](repeating: 0, count: max(0, channels))
        sampledYUm = yUm
        bone = [Bool](repeating: false, count: max(0, channels))
        lean = bone
        boneYUm = nil
    }

    /// Which of this line's bone (`covered`, its runs and their holes) the previous line
    /// confirms: bone there too, at the same channel or within `reach` channels of it, within
    /// `boneReachUm` (into `confirmed`). Without such a line, all of it.
    func confirm(_ covered: UnsafePointer<Bool>, _ n: Int, yUm: Int32, pitchUm: Int, into confirmed: UnsafeMutablePointer<Bool>) {
        guard let reach = reach(channels: n, yUm: yUm, pitchUm: pitchUm) else {
            for c in 0..<n { confirmed[c] = covered[c] }
            return
        }
        bone.withUnsafeBufferPointer { bone in
            if let base = bone.baseAddress { Self.dilate(base, n, within: reach, into: confirmed) }
        }
        for c in 0..<n { confirmed[c] = confirmed[c] && covered[c] }
    }

    /// Whether `mask` holds at each of the first `n` channels or within `reach` of it (into
    /// `out`), by a running count over the window: one pass for the whole line.
    static func dilate(_ mask: UnsafePointer<Bool>, _ n: Int, within reach: Int, into out: UnsafeMutablePointer<Bool>) {
        var count = 0
        for k in 0..<min(n, reach) where mask[k] { count += 1 }
        for c in 0..<n {
            let entering = c + reach, leaving = c - reach - 1
            if entering < n, mask[entering] { count += 1 }
            if leaving >= 0, mask[leaving] { count -= 1 }
            out[c] = count > 0
        }
    }

    /// How many channels an edge may have moved since the previous line, for a line of `n`
    /// channels at `yUm`: one for every pitch of distance along the scan (an edge at 45°), at
    /// least one. Nil where there is no previous line to judge by (none yet, another width, or
    /// farther than `boneReachUm`).
    func reach(channels n: Int, yUm: Int32, pitchUm: Int) -> Int? {
        guard bone.count == n, lean.count == n, let y = boneYUm else { return nil }
        let d = abs(Int64(y) - Int64(yUm)), p = Int64(max(pitchUm, 1))
        guard d <= Int64(Self.boneReachUm) else { return nil }
        return max(1, Int((d + p - 1) / p))
    }

}
