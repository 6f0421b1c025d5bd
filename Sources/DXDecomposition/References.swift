import DXProtocol
import Foundation

/// Why a reference or a calibration could not be made: each is something a service engineer
/// can act on.
public enum DecompositionError: Error, Equatable, Sendable, CustomStringConvertible {
    case noLines(String)
    case channelMismatch(expected: Int, got: Int)
    case saturatedReference(String, channels: [Int])
    case darkLevelAir(channels: [Int])
    case tooFewCalibrationPoints(Int, needed: Int)
    case calibrationRangeMissing(String)
    case singularFit(String)

    public var description: String {
        switch self {
        case .noLines(let what): "no lines to make the \(what) from"
        case let .channelMismatch(e, g): "the scan has \(g) channels, the references \(e)"
        case let .saturatedReference(what, channels): "the \(what) is saturated on channels \(Self.list(channels)); lower the tube current or the line period"
        case .darkLevelAir(let channels): "the air scan is no brighter than the dark scan on channels \(Self.list(channels)); is the shutter closed or the tube off?"
        case let .tooFewCalibrationPoints(n, needed): "only \(n) usable calibration cells, at least \(needed) needed"
        case .calibrationRangeMissing(let what): "the calibration scan does not span \(what) (ICD §8)"
        case .singularFit(let what): "the calibration cannot be fitted: \(what)"
        }
    }

    static func list(_ c: [Int]) -> String {
        c.count > 8 ? c.prefix(8).map(String.init).joined(separator: ", ") + " and \(c.count - 8) more" : c.map(String.init).joined(separator: ", ")
    }
}

/// Per-channel mean counts of one window pair, from a scan.
public struct ChannelMeans: Sendable, Equatable, Codable {
    public var low: [Double]
    public var high: [Double]
    public var channels: Int { low.count }

    /// Means over `lines`; channels that saturated in any line are listed in `saturated`.
    public static func of(_ lines: [ScanLine]) throws(DecompositionError) -> (ChannelMeans, saturated: [Int]) {
        guard let first = lines.first else { throw .noLines("reference") }
        let n = first.channels
        var low = [Double](repeating: 0, count: n), high = [Double](repeating: 0, count: n)
        var saturated = Set<Int>()
        for l in lines {
            guard l.channels == n else { throw .channelMismatch(expected: n, got: l.channels) }
            for c in 0..<n {
                let lo = l.low(c), hi = l.high(c)
                if lo == 65535 || hi == 65535 { saturated.insert(c) }
                low[c] += Double(lo)
                high[c] += Double(hi)
            }
        }
        let k = Double(lines.count)
        return (ChannelMeans(low: low.map { $0 / k }, high: high.map { $0 / k }), saturated.sorted())
    }
}

/// The detector's offsets, from a dark scan (ICD §6: mode DARK).
public struct DarkReference: Sendable, Equatable, Codable {
    public var means: ChannelMeans
    /// Each channel's pedestal noise (standard deviation of a sample, counts); nil for a
    /// reference of fewer than 10 lines.
    public var noise: ChannelMeans?

    /// No channels at all: for a choice that needs no counts.
    public static let empty = DarkReference(means: ChannelMeans(low: [], high: []), noise: nil)

    init(means: ChannelMeans, noise: ChannelMeans?) { self.means = means; self.noise = noise }

    public init(lines: [ScanLine]) throws(DecompositionError) {
        let (m, saturated) = try ChannelMeans.of(lines)
        guard saturated.isEmpty else { throw .saturatedReference("dark scan", channels: saturated) }
        means = m
        guard lines.count >= 10 else { noise = nil; return }
        var low = [Double](repeating: 0, count: m.channels), high = low
        for l in lines {
            for c in 0..<m.channels {
                let dl = Double(l.low(c)) - m.low[c], dh = Double(l.high(c)) - m.high[c]
                low[c] += dl * dl; high[c] += dh * dh
            }
        }
        let k = Double(lines.count - 1)
        noise = ChannelMeans(low: low.map { ($0 / k).squareRoot() }, high: high.map { ($0 / k).squareRoot() })
    }
}

/// The unattenuated beam per channel, dark-subtracted, from an air scan (ICD §6: mode DUAL
/// in the air zone), normalised to counts per microsecond·microampere so that scans with
/// other periods and currents can use it.
public struct AirReference: Sendable, Equatable, Codable {
    public var low: [Double]
    public var high: [Double]
    /// The air scan's line period (µs) and tube current (µA): what its rate loss
    /// (`CountRate`) is undone at. Nil in references made without them (no correction).
    public var periodUs: Double?
    public var currentUA: Double?

    public init(lines: [ScanLine], dark: DarkReference, periodUs: UInt32, currentUA: UInt32) throws(DecompositionError) {
        let (m, saturated) = try ChannelMeans.of(lines)
        guard saturated.isEmpty else { throw .saturatedReference("air scan", channels: saturated) }
        guard m.channels == dark.means.channels else { throw .channelMismatch(expected: dark.means.channels, got: m.channels) }
        let exposure = Double(periodUs) * Double(max(currentUA, 1))
        var dim: [Int] = []
        var low = [Double](repeating: 0, count: m.channels), high = low
        for c in 0..<m.channels {
            let l = m.low[c] - dark.means.low[c], h = m.high[c] - dark.means.high[c]
            // An air count within a few standard deviations of dark is no beam at all.
            if h < 10 * max(dark.means.high[c].squareRoot(), 1) { dim.append(c) }
            low[c] = max(l, 0) / exposure
            high[c] = max(h, 0) / exposure
        }
        guard dim.isEmpty else { throw .darkLevelAir(channels: dim) }
        self.low = low
        self.high = high
        self.periodUs = Double(periodUs)
        self.currentUA = Double(max(currentUA, 1))
    }

    /// The true counts per µs·µA, the rate loss of a counter of dead time `deadTimeUs` undone
    /// (`CountRate`); the reference as measured when there is none or its scan is unknown.
    public func corrected(deadTimeUs: Double) -> (low: [Double], high: [Double]) {
        guard deadTimeUs > 0, let periodUs, let currentUA else { return (low, high) }
        let e = periodUs * currentUA, a = deadTimeUs / periodUs
        var l = low, h = high
        for c in low.indices {
            let t = CountRate.trueCounts(low: low[c] * e, high: high[c] * e, a: a)
            l[c] = t.low / e
            h[c] = t.high / e
        }
        return (l, h)
    }
}
