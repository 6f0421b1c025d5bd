import Foundation

/// A movement of the patient found in the data: the scan line where it began (counted from
/// 0), its lateral size in mm (signed: positive towards larger x, the patient's left in an AP
/// view) and how sure the check is.
public struct MotionEvent: Sendable, Equatable, Codable {
    public var line: Int
    public var shiftMM: Double
    /// The line at which the check was sure (the movement began at `line`).
    public var detectedAtLine: Int

    public enum CodingKeys: String, CodingKey {
        case line
        case shiftMM = "shift_mm"
        case detectedAtLine = "detected_at_line"
    }
}

/// The stillness check: the lateral position of each line's attenuation profile against the
/// line before it. Anatomy changes little from one line to the next; a patient who moves
/// shifts the whole profile at once, and keeps it shifted. So each line's profile
/// (high-window attenuation: bone edges and the soft tissue's slope both mark it) is matched
/// against the last line at the settled position (the mean of the last `memory` such lines)
/// over shifts of ±`searchMM`, to a fraction of a pixel; a shift of at least `minimumMM` that
/// holds, with the same sign, for `confirmLines` lines in a row is a movement, reported at
/// its first line. The reference then restarts from the new position. A pure value, fed line
/// by line: the same code runs live and in `dexa analyze`.
///
/// Measured on the simulator's patient (AP spine, 1 mm lines): a 2 mm movement at a random
/// line found within 5 lines in 98 of 100 scans with block vertebrae, 82 of 100 on the
/// anatomical spine (docs/exam.md); no alarm in 100 still scans (tests).
public struct StillnessCheck: Sendable {
    /// The width of the profile's bins: about 1 mm, a whole number of detector channels
    /// (finer detectors are binned; a movement of a fraction of a bin is still read from the
    /// parabola through the costs).
    public let pitchMM: Double
    private let binning: Int
    public var minimumMM = 1.0
    public var searchMM = 12.0
    public var memory = 1
    public var confirmLines = 3
    /// How many lines a movement may take to settle (twice the confirmation: 3 s of the
    /// lateral spine's 0.5 s lines, 6 s of the AP spine's 1 s lines).
    public var settleLines = 6
    /// How much better (in units of the noise, summed over the line) the best shift must fit
    /// than no shift at all before it counts.
    public var minimumEvidence = 40.0
    /// How much worse a typical shift fits than the best one (same units) for the line to have
    /// anything to place it by: noise alone over a uniform block reaches about 100 on 144
    /// pixels; a patient's AP spine line is over 500 (tests).
    public var minimumStructure = 200.0

    private var history: [[Double]] = []
    /// A movement begun and not yet confirmed: its first line, that line's profile, and the
    /// shifts of the lines since.
    private var pending: (line: Int, first: [Double], shifts: [Double])?
    private var lineNumber = 0
    public private(set) var events: [MotionEvent] = []

    public init(pitchUm: Int) {
        let pitch = max(pitchUm, 1)
        binning = max(1, Int((1000 / Double(pitch)).rounded()))
        pitchMM = Double(pitch * binning) / 1000
    }

    /// Means over `binning` channels (NaN where a bin holds no finite value).
    func binned(_ values: [Double]) -> [Double] {
        guard binning > 1 else { return values }
        return stride(from: 0, to: values.count - binning + 1, by: binning).map { start in
            var sum = 0.0, k = 0
            for v in values[start..<(start + binning)] where v.isFinite { sum += v; k += 1 }
            return k == binning ? sum / Double(k) : .nan
        }
    }

    /// Feeds the next line's high-window attenuation (NaN where a pixel is flagged); returns a
    /// movement when this line confirms one. `line`: the line's index in the scan, which the
    /// events then name (a scan that lost lines counts them); without it lines are counted
    /// from 0 as they come.
    public mutating func add(highAttenuation values: [Double], line: Int? = nil) -> MotionEvent? {
        if let line { lineNumber = line }
        defer { lineNumber += 1 }
        let profile = binned(values)
        guard history.count >= memory else {
            history.append(profile)
            return nil
        }
        let reference = Self.mean(history)
        let (best, evidence, structure) = Self.bestShift(profile, against: reference, maxShift: Int((searchMM / pitchMM).rounded(.up)))
        // A line with nothing to place it by (a uniform block of tissue: every shift fits about
        // as well) says nothing either way: it neither confirms nor breaks a movement.
        if structure < minimumStructure {
            if pending == nil { history = [profile] }
            return nil
        }
        // A shift the data do not clearly prefer over none counts as none.
        let shift = evidence >= minimumEvidence ? best * pitchMM : 0
        var found: MotionEvent?
        if abs(shift) >= minimumMM {
            if var p = pending, let last = p.shifts.last, (last > 0) == (shift > 0) {
                // A movement is a step that holds: the lines after it agree with each other. A
                // profile still sliding between the first of them and the last is a patient
                // still moving, or anatomy that changes its place along the scan (a rib sloping
                // across the lateral field): the confirmation starts again from this line against
                // the same reference, for as long as a movement takes (`settleLines`); a slide
                // that outlasts it is anatomy, and the reference follows it.
                if p.shifts.count + 1 >= confirmLines {
                    let drift = Self.bestShift(profile, against: p.first, maxShift: Int((searchMM / pitchMM).rounded(.up)))
                    if drift.evidence >= minimumEvidence && abs(drift.shift * pitchMM) >= minimumMM {
                        if lineNumber - p.line < settleLines {
                            pending = (p.line, profile, [shift])
                        } else {
                            pending = nil
                            history = [profile]
                        }
                        return nil
                    }
                }
                p.shifts.append(shift)
                pending = p
            } else {
                pending = (lineNumber, profile, [shift])
            }
            if let p = pending, p.shifts.count >= confirmLines {
                let size = p.shifts.sorted()[p.shifts.count / 2]
                let event = MotionEvent(line: p.line, shiftMM: (size * 10).rounded() / 10, detectedAtLine: lineNumber)
                events.append(event)
                found = event
                pending = nil
                // Restart from the new position.
                history = []
            }
        } else {
            pending = nil
        }
        // Only lines at the settled position go into the reference.
        if pending == nil {
            history.append(profile)
            if history.count > memory { history.removeFirst() }
        }
        return found
    }

    static func mean(_ lines: [[Double]]) -> [Double] {
        guard let n = lines.first?.count else { return [] }
        var sum = [Double](repeating: 0, count: n), count = [Double](repeating: 0, count: n)
        for l in lines where l.count == n {
            for c in 0..<n where l[c].isFinite { sum[c] += l[c]; count[c] += 1 }
        }
        return (0..<n).map { count[$0] > 0 ? sum[$0] / count[$0] : .nan }
    }

    /// The shift s (pixels, to a fraction) that best maps `reference(x − s)` onto `profile(x)`.
    /// The cost of a shift adds two robust mean squared differences over the overlap, each in
    /// units of its own noise and each pixel's share capped at 5 deviations: of the levels
    /// (which carry the soft tissue's slope where there is no bone) and of the steps between
    /// neighbouring pixels (bone edges, which keep their place when a vertebral body begins or
    /// ends under them at a disc space, where the levels change over wide spans). Minimised over
    /// whole pixels, refined by a parabola through the minimum and its neighbours.
    /// Returns the shift, its evidence (how much better it fits than no shift) and the line's
    /// structure (how much better it fits than the median shift), summed over the line in units
    /// of the noise.
    static func bestShift(_ profile: [Double], against reference: [Double], maxShift: Int) -> (shift: Double, evidence: Double, structure: Double) {
        let n = min(profile.count, reference.count)
        guard n > 4 * maxShift else { return (0, 0, 0) }
        func steps(_ v: [Double]) -> [Double] { (0..<(n - 1)).map { v[$0 + 1] - v[$0] } }
        let levels = robustCosts(profile, reference, n: n, maxShift: maxShift)
        let edges = robustCosts(steps(profile), steps(reference), n: n - 1, maxShift: maxShift)
        let costs = zip(levels, edges).map { $0 + $1 }
        guard let best = costs.indices.min(by: { costs[$0] < costs[$1] }), costs[best].isFinite, costs[maxShift].isFinite else { return (0, 0, 0) }
        let evidence = (costs[maxShift] - costs[best]) * Double(n)
        let finite = costs.filter(\.isFinite).sorted()
        let structure = (finite[finite.count / 2] - costs[best]) * Double(n)
        var s = Double(best - maxShift)
        if best > 0, best < costs.count - 1, costs[best - 1].isFinite, costs[best + 1].isFinite {
            let l = costs[best - 1], c = costs[best], r = costs[best + 1]
            let denominator = l - 2 * c + r
            if denominator > 0 { s += 0.5 * (l - r) / denominator }
        }
        return (s, evidence, structure)
    }

    /// Robust mean squared differences (in units of the noise, each pixel capped at 25) of
    /// `profile(x)` against `reference(x − s)` for every shift s; infinity where too little
    /// overlaps. The noise is from the median absolute difference at no shift (most pixels are
    /// only noise apart when nothing moved).
    static func robustCosts(_ profile: [Double], _ reference: [Double], n: Int, maxShift: Int) -> [Double] {
        var costs = [Double](repeating: .infinity, count: 2 * maxShift + 1)
        var differences: [Double] = []
        for x in 0..<n where profile[x].isFinite && reference[x].isFinite { differences.append(abs(profile[x] - reference[x])) }
        guard differences.count >= n / 2 else { return costs }
        differences.sort()
        let sigma = max(1.4826 * differences[differences.count / 2], 1e-6)
        let scale = 1 / (sigma * sigma)
        for s in -maxShift...maxShift {
            var sum = 0.0, k = 0
            for x in max(0, s)..<min(n, n + s) {
                let a = profile[x], b = reference[x - s]
                if a.isFinite && b.isFinite { let d = a - b; sum += min(d * d * scale, 25); k += 1 }
            }
            // Too little overlap to judge: leave this shift out.
            if k >= n / 2 { costs[s + maxShift] = sum / Double(k) }
        }
        return costs
    }
}
