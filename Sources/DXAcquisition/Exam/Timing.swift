import DXProtocol
import Foundation

/// The timing checks of one scan, fed its lines as they arrive: line cadence from the device
/// clock (`t_us` of consecutive lines against the configured period), missing lines, and at
/// the end whether the scan over- or under-ran lines × period. (Stalls and heartbeat gaps
/// need a clock running while nothing arrives: `ExamSequencer` watches for those.)
public struct TimingMonitor: Sendable {
    public let periodUs: UInt32
    /// The ICD gives no tolerance for the line period; this project reads ±10 % as the most
    /// a line may stray from the configured period before it is reported (docs/ICD-NOTES.md).
    public var jitterTolerance = 0.10
    /// A scan's length may differ from lines × period by this fraction (and one period).
    public var durationTolerance = 0.02

    private var firstT: UInt64?
    private var lastT: UInt64?
    private var nextIndex: UInt32 = 0
    public private(set) var lines = 0
    public private(set) var offCadence = 0
    public private(set) var missingLines = 0

    public init(periodUs: UInt32) { self.periodUs = periodUs }

    /// The warnings this line raises: the first line off cadence and every 25th after it, and
    /// each run of missing lines.
    public mutating func add(_ line: ScanLine) -> [ExamWarning] {
        var out: [ExamWarning] = []
        let skipped = line.index > nextIndex ? Int(line.index - nextIndex) : 0
        if skipped > 0 {
            let missing = skipped
            missingLines += missing
            out.append(ExamWarning(kind: .missingLines, message: "\(missing) line\(missing == 1 ? "" : "s") missing before line \(line.index)",
                                   line: Int(line.index), value: Double(missing)))
        }
        nextIndex = line.index &+ 1
        if let last = lastT, line.tUs > last {
            let gapLines = Double(line.tUs - last) / Double(periodUs)
            // A gap after missing lines is expected to span them.
            let expected = Double(1 + skipped)
            let deviation = gapLines / expected - 1
            if abs(deviation) > jitterTolerance {
                offCadence += 1
                if offCadence == 1 || offCadence % 25 == 0 {
                    out.append(ExamWarning(kind: .jitter, message: String(format: "line %d came %.0f ms after the one before (period %.0f ms, %+.0f %%); %d lines off cadence so far",
                                                                         line.index, Double(line.tUs - last) / 1000, Double(periodUs) / 1000, deviation * 100, offCadence),
                                           line: Int(line.index), value: deviation))
                }
            }
        }
        if firstT == nil { firstT = line.tUs }
        lastT = line.tUs
        lines += 1
        return out
    }

    /// At the end of a completed scan: its length against lines × period.
    public func finish() -> [ExamWarning] {
        guard let first = firstT, let last = lastT, lines > 1 else { return [] }
        let actual = Double(last - first) / 1e6 + Double(periodUs) / 1e6
        let expected = Double(lines) * Double(periodUs) / 1e6
        let allowed = expected * durationTolerance + Double(periodUs) / 1e6
        if actual > expected + allowed {
            return [ExamWarning(kind: .overrun, message: String(format: "the scan took %.1f s where %d lines × %.0f ms make %.1f s", actual, lines, Double(periodUs) / 1000, expected),
                                value: actual - expected)]
        }
        if actual < expected - allowed {
            return [ExamWarning(kind: .underrun, message: String(format: "the scan took %.1f s where %d lines × %.0f ms make %.1f s", actual, lines, Double(periodUs) / 1000, expected),
                                value: actual - expected)]
        }
        return []
    }
}
