import DXProtocol
import Foundation
import Synchronization

/// What one stage of the pipeline has done: lines in, lines out, lines it had no room for,
/// the most it held at once and the time it spent (EPICS areaDetector's plugin counters).
public struct StageCounters: Sendable, Equatable, Codable {
    public var name: String
    public var received = 0
    public var processed = 0
    public var dropped = 0
    public var failed = 0
    public var maxQueued = 0
    public var busySeconds = 0.0

    public init(name: String) { self.name = name }

    public enum CodingKeys: String, CodingKey {
        case name, received, processed, dropped, failed
        case maxQueued = "max_queued", busySeconds = "busy_s"
    }
}

/// The decomposed scan so far: ROI means, the bone found (the quick look a technologist reads
/// before the next scan) and how complete it is.
public struct LiveResult: Sendable, Equatable, Codable {
    public var lines: Int
    public var rois: [ROIResult]
    /// Patient movements the stillness check found (line counted from 0 in the scan).
    public var motion: [MotionEvent]
    /// Pixels classified as bone, their area and their mean bone mineral.
    public var bonePixels: Int
    public var boneAreaCm2: Double
    /// nil when no pixel was bone.
    public var meanBoneBMD: Double?
    /// False when lines were dropped or could not be decomposed (the capture holds them all,
    /// and `dexa analyze` gives the full result), or never arrived at all (`missingLines`).
    public var complete: Bool
    /// Lines the scan was configured for that never arrived, and which (inclusive ranges of
    /// line indices): CRC-failed or lost frames, a scan cut short.
    public var missingLines: Int
    public var missingLineRanges: [[Int]]
    public var stages: [StageCounters]
    /// From a line's arrival to its decomposition (seconds).
    public var latencyP50: Double
    public var latencyP99: Double

    public enum CodingKeys: String, CodingKey {
        case lines, rois, motion, complete, stages
        case missingLines = "missing_lines", missingLineRanges = "missing_line_ranges"
        case bonePixels = "bone_pixels", boneAreaCm2 = "bone_area_cm2", meanBoneBMD = "mean_bone_bmd_g_cm2"
        case latencyP50 = "latency_p50_s", latencyP99 = "latency_p99_s"
    }
}

/// Which lines of a scan arrived, against the configuration's line count: the lines a result
/// is missing (CRC-failed or lost frames, a scan cut short), named by index.
public struct LineLedger: Sendable, Equatable {
    public let configuration: ScanConfiguration
    private var arrived: [Bool]
    /// Lines that arrived more than once, or whose index lies outside the scan.
    private(set) public var unexpected = 0

    public init(configuration: ScanConfiguration) {
        self.configuration = configuration
        // The ICD bounds a scan to 600 s; a line count beyond any real scan is not trusted
        // with memory (the ledger then only counts).
        arrived = [Bool](repeating: false, count: Int(min(configuration.lineCount, 1_000_000)))
    }

    public mutating func record(_ index: UInt32) {
        let i = Int(index)
        guard arrived.indices.contains(i), !arrived[i] else { unexpected += 1; return }
        arrived[i] = true
    }

    public var received: Int { arrived.count(where: { $0 }) }
    public var expected: Int { arrived.count }

    /// Missing line indices as inclusive ranges, in order.
    public var missingRanges: [ClosedRange<Int>] {
        var ranges: [ClosedRange<Int>] = []
        var start: Int?
        for (i, ok) in arrived.enumerated() {
            if !ok, start == nil { start = i }
            if ok, let s = start { ranges.append(s...(i - 1)); start = nil }
        }
        if let s = start { ranges.append(s...(arrived.count - 1)) }
        return ranges
    }

    public var missingCount: Int { expected - received }

    /// How many missing lines pass through `roi`.
    public func missing(in roi: ROIAccumulator) -> Int {
        var n = 0
        for r in missingRanges {
            for i in r where roi.contains(yUm: Int32(clamping: configuration.yUm(ofLine: Int64(i)))) { n += 1 }
        }
        return n
    }

    /// "12 of 536 lines missing (lines 40–43, 300–307)".
    public var summary: String {
        guard missingCount > 0 else { return "all \(expected) lines" }
        let shown = missingRanges.prefix(8).map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)–\($0.upperBound)" }
        let more = missingRanges.count > 8 ? ", …" : ""
        return "\(missingCount) of \(expected) lines missing (line\(missingCount == 1 ? "" : "s") \(shown.joined(separator: ", "))\(more))"
    }
}

/// The scan-time half of the pipeline, as pure values: attenuation, decomposition, ROI and
/// bone accumulation, one line at a time. `dexa analyze` runs the same struct over a
/// capture's lines, so live and offline results are the same numbers.
public struct ScanDecomposition: Sendable {
    public let stage: PreparedAttenuation
    public let decomposer: Decomposer
    public let pixelAreaCm2: Double
    private var rois: [ROIAccumulator]
    private var stillness: StillnessCheck
    private var memory: TissueMemory?
    private var boneSum = 0.0
    private(set) public var bonePixels = 0
    private(set) public var lines = 0
    private(set) public var ledger: LineLedger
    /// The scan so far as an image with its geometry (the value analyses work on); its
    /// provenance's capture and region are the caller's to fill in. A single-energy scan's
    /// image is made over the whole scan when it is read (`SingleEnergyDecomposer.image`);
    /// its lines as they come carry each line's own.
    public var decomposed: DecomposedScan {
        get {
            guard let single, !singleHigh.isEmpty else { return lineByLine }
            var scan = lineByLine
            single.image(high: singleHigh, variance: singleVariance, into: &scan)
            return scan
        }
        set { lineByLine = newValue }
    }
    private var lineByLine: DecomposedScan
    /// A single-energy scan's high-window log attenuations and their variances, row by row.
    private var singleHigh: [Double] = [], singleVariance: [Double] = []

    /// For a single-energy scan (mode SINGLE): its bone image from the high window alone
    /// (`SingleEnergyDecomposer`); nil for a dual-energy one, or when the calibration cannot
    /// give one (then the lines are counted and their pixels left without a number).
    public let single: SingleEnergyDecomposer?

    /// `keepsImage`: fill `decomposed` line by line (13 bytes a pixel); without it the scan's
    /// image has no rows and only the ROIs, bone totals, ledger and stillness check are kept,
    /// whatever the scan's length.
    public init(stage: AttenuationStage, calibration: Calibration, geometry: ScanGeometry, rois: [Phantom.ROI],
                configuration: ScanConfiguration, keepsImage: Bool = true) {
        self.stage = stage.prepared(for: configuration, calibration: calibration)
        decomposer = Decomposer(calibration: calibration, pitchUm: geometry.pitchUm)
        single = configuration.mode == .single ? SingleEnergyDecomposer(calibration: calibration, pitchUm: geometry.pitchUm) : nil
        memory = TissueMemory(channels: geometry.channels)
        pixelAreaCm2 = Double(geometry.pitchUm) * Double(abs(configuration.lineStepUm)) / 1e8
        self.rois = rois.map { ROIAccumulator(roi: $0, geometry: geometry) }
        stillness = StillnessCheck(pitchUm: geometry.pitchUm)
        ledger = LineLedger(configuration: configuration)
        var imageGeometry = DecomposedScan.Geometry(scan: geometry, configuration: configuration)
        if !keepsImage { imageGeometry.lines = 0 }
        lineByLine = DecomposedScan(geometry: imageGeometry,
                                provenance: .init(capture: nil, scanID: configuration.scanID, calibration: calibration.source))
        lineByLine.provenance.calibratedSoftTissueGCm2 = calibration.thickestSoftTissueGCm2
        if configuration.mode == .single && keepsImage {
            lineByLine.provenance.singleEnergy = true
            if single != nil {
                let n = geometry.channels * Int(configuration.lineCount)
                singleHigh = [Double](repeating: .nan, count: n)
                singleVariance = singleHigh
            }
        }
    }

    /// A line in: decomposed, added to the ROIs and the bone totals, and checked for patient
    /// movement (`motion` holds what the stillness check found so far).
    @discardableResult
    public mutating func add(_ line: ScanLine) throws(DecompositionError) -> DecomposedLine {
        if ledger.configuration.mode == .single {
            // No bone mineral: no ROI or bone totals, only the image and the checks.
            let attenuation = try stage.processHigh(line)
            let n = attenuation.high.count, none = [Double](repeating: .nan, count: n)
            let d = single?.decompose(attenuation)
                ?? DecomposedLine(index: line.index, yUm: line.yUm, xUm: line.xUm, bone: none, soft: none, fatFraction: none,
                                  isBone: [Bool](repeating: false, count: n), flags: attenuation.flags)
            ledger.record(line.index)
            let found = stillness.events.count
            _ = stillness.add(highAttenuation: attenuation.high, line: Int(line.index))
            lineByLine.add(d)
            if stillness.events.count > found { lineByLine.motion = stillness.events }
            let row = Int(line.index), width = lineByLine.geometry.channels
            if !singleHigh.isEmpty, row >= 0, row < lineByLine.geometry.lines, n == width {
                for c in 0..<n {
                    singleHigh[row * width + c] = attenuation.high[c]
                    singleVariance[row * width + c] = attenuation.varianceHigh[c]
                }
            }
            lines += 1
            return d
        }
        let attenuation = try stage.process(line)
        let d = decomposer.decompose(attenuation, memory: &memory)
        ledger.record(line.index)
        let found = stillness.events.count
        _ = stillness.add(highAttenuation: attenuation.high, line: Int(line.index))
        for k in rois.indices { rois[k].add(d) }
        lineByLine.add(d)
        if stillness.events.count > found { lineByLine.motion = stillness.events }
        for c in 0..<d.bone.count where d.isBone[c] && d.bone[c].isFinite {
            boneSum += d.bone[c]
            bonePixels += 1
        }
        lines += 1
        return d
    }

    /// Each ROI's result, with the lines through it that never arrived.
    public var roiResults: [ROIResult] { rois.map { $0.result(missingLines: ledger.missing(in: $0)) } }
    public var motion: [MotionEvent] { stillness.events }
    public var meanBoneBMD: Double { bonePixels > 0 ? boneSum / Double(bonePixels) : .nan }
    public var boneAreaCm2: Double { Double(bonePixels) * pixelAreaCm2 }
}

/// The live pipeline: lines go in as they arrive (`submit`, from the scan's feed, never
/// blocking it) through a bounded queue to one decomposition task. When the queue is full the
/// newest lines are dropped and counted: the capture on disk still holds every line, so the
/// live result says it is incomplete rather than slowing acquisition down.
public final class LivePipeline: Sendable {
    private struct Arrival: Sendable {
        var line: ScanLine
        var at: ContinuousClock.Instant
    }

    private struct Queue: Sendable {
        var input = StageCounters(name: "queue")
        var queued = 0
    }

    /// The queue's counters, shared by the submitting side and the worker.
    private final class Shared: Sendable {
        let state = Mutex(Queue())
        func withLock<T>(_ body: (inout Queue) -> T) -> T { state.withLock { body(&$0) } }
    }

    private let continuation: AsyncStream<Arrival>.Continuation
    private let worker: Task<(ScanDecomposition, StageCounters, [Double], Bool), Never>
    private let shared: Shared
    private let clock = ContinuousClock()
    public let capacity: Int

    /// Starts the decomposition task, which ends when `finish` is called or the pipeline is
    /// released. `onLine` sees each decomposed line (the image, for whoever draws it).
    /// `onMotion` hears of each patient movement the moment the stillness check is sure of it.
    public static func start(_ decomposition: ScanDecomposition, capacity: Int = 1024,
                             onLine: (@Sendable (DecomposedLine) -> Void)? = nil,
                             onMotion: (@Sendable (MotionEvent) -> Void)? = nil) -> LivePipeline {
        LivePipeline(decomposition, capacity: capacity, onLine: onLine, onMotion: onMotion)
    }

    private init(_ decomposition: ScanDecomposition, capacity: Int, onLine: (@Sendable (DecomposedLine) -> Void)?,
                 onMotion: (@Sendable (MotionEvent) -> Void)?) {
        self.capacity = capacity
        let (stream, continuation) = AsyncStream<Arrival>.makeStream(bufferingPolicy: .bufferingOldest(capacity))
        self.continuation = continuation
        let shared = Shared()
        self.shared = shared
        let clock = self.clock
        worker = Task {
            var work = decomposition
            var counters = StageCounters(name: "decompose")
            var latencies: [Double] = []
            var complete = true
            for await arrival in stream {
                shared.withLock { $0.queued -= 1 }
                counters.received += 1
                let start = clock.now
                do {
                    let before = work.motion.count
                    let d = try work.add(arrival.line)
                    onLine?(d)
                    if work.motion.count > before, let m = work.motion.last { onMotion?(m) }
                    counters.processed += 1
                } catch {
                    counters.failed += 1
                    complete = false
                }
                let end = clock.now
                counters.busySeconds += (end - start).seconds
                latencies.append((end - arrival.at).seconds)
            }
            return (work, counters, latencies, complete)
        }
    }

    /// Hands lines to the pipeline; never waits.
    public func submit(_ lines: [ScanLine]) {
        let now = clock.now
        for line in lines {
            // Count before yielding so that the worker's decrement never runs first.
            shared.withLock { s in
                s.input.received += 1
                s.queued += 1
                s.input.maxQueued = max(s.input.maxQueued, s.queued)
            }
            if case .dropped = continuation.yield(Arrival(line: line, at: now)) {
                shared.withLock { s in
                    s.input.dropped += 1
                    s.queued -= 1
                }
            }
        }
    }

    /// No more lines: waits for the queue to drain and returns the result.
    public func finish() async -> LiveResult { await finishWithScan().result }

    /// The result and the decomposed scan it was computed from (the image an exam stores).
    public func finishWithScan() async -> (result: LiveResult, scan: DecomposedScan) {
        continuation.finish()
        let (work, counters, latencies, failures) = await worker.value
        var input = shared.withLock { $0.input }
        input.processed = input.received - input.dropped
        let sorted = latencies.sorted()
        func quantile(_ q: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
        let result = LiveResult(lines: work.lines, rois: work.roiResults, motion: work.motion, bonePixels: work.bonePixels, boneAreaCm2: work.boneAreaCm2,
                                meanBoneBMD: work.meanBoneBMD.isFinite ? work.meanBoneBMD : nil,
                                complete: failures && input.dropped == 0 && work.ledger.missingCount == 0,
                                missingLines: work.ledger.missingCount,
                                missingLineRanges: work.ledger.missingRanges.map { [$0.lowerBound, $0.upperBound] }, stages: [input, counters],
                                latencyP50: quantile(0.5), latencyP99: quantile(0.99))
        return (result, work.decomposed)
    }
}

/// The live analysis of a scan sequence (dark, air, then the scan to measure): collects the
/// reference scans' lines, makes the references when the measured scan's first lines arrive
/// and streams that scan through a `LivePipeline`. Fed from the scan runner's line callback.
public final class LiveSequenceAnalysis: Sendable {
    public struct Scan: Sendable {
        public var role: CaptureScan.Role
        public var configuration: ScanConfiguration
        public init(role: CaptureScan.Role, configuration: ScanConfiguration) { self.role = role; self.configuration = configuration }
    }

    private struct State: Sendable {
        var dark: [ScanLine] = []
        var air: [ScanLine] = []
        var pipeline: LivePipeline?
        var failure: String?
    }

    private let calibration: Calibration
    private let geometry: ScanGeometry
    private let rois: [Phantom.ROI]
    private let scans: [Scan]
    private let onMotion: (@Sendable (MotionEvent) -> Void)?
    private let onLine: (@Sendable (DecomposedLine) -> Void)?
    private let keepsImage: Bool
    private let state = Mutex(State())

    /// `keepsImage`: keep the measured scan's decomposed image (an exam's site needs it; a
    /// replay's figures do not, and then memory does not grow with the scan's length).
    /// `onLine`: each of the measured scan's lines once decomposed (a screen draws the image
    /// growing from them).
    public init(calibration: Calibration, geometry: ScanGeometry, rois: [Phantom.ROI], scans: [Scan],
                onMotion: (@Sendable (MotionEvent) -> Void)? = nil, onLine: (@Sendable (DecomposedLine) -> Void)? = nil,
                keepsImage: Bool = true) {
        self.onMotion = onMotion
        self.onLine = onLine
        self.keepsImage = keepsImage
        self.calibration = calibration
        self.geometry = geometry
        self.rois = rois
        self.scans = scans
    }

    /// Index of the scan that is measured: the last one.
    public var measuredIndex: Int { scans.count - 1 }

    public func lines(_ lines: [ScanLine], scan index: Int) {
        guard scans.indices.contains(index) else { return }
        let scan = scans[index]
        state.withLock { s in
            if index == measuredIndex {
                if s.pipeline == nil && s.failure == nil, !(calibration.channelResponse?.fits(channels: geometry.channels) ?? false) {
                    s.failure = "the calibration's channel response is not for this detector's \(geometry.channels) channels: recalibrate"
                }
                if s.pipeline == nil && s.failure == nil {
                    do {
                        let airConfig = scans.first { $0.role == .air }?.configuration
                        let stage = try AttenuationStage(darkLines: s.dark, airLines: s.air, airPeriodUs: airConfig?.linePeriodUs ?? 0,
                                                         airCurrentUA: airConfig?.tubeCurrentUA ?? 0)
                        let work = ScanDecomposition(stage: stage, calibration: calibration,
                                                     geometry: geometry, rois: rois, configuration: scan.configuration, keepsImage: keepsImage)
                        s.pipeline = LivePipeline.start(work, onLine: onLine, onMotion: onMotion)
                        s.dark = []; s.air = []
                    } catch {
                        s.failure = "references: \(error)"
                    }
                }
                s.pipeline?.submit(lines)
            } else if scan.role == .dark {
                s.dark += lines
            } else if scan.role == .air {
                s.air += lines
            }
        }
    }

    /// The result once the measured scan has ended, or why there is none.
    public func finish() async -> Result<LiveResult, LiveAnalysisError> { await finishWithScan().map(\.result) }

    /// The result and the decomposed scan (its provenance's capture and region left to the
    /// caller), or why there is none.
    public func finishWithScan() async -> Result<(result: LiveResult, scan: DecomposedScan), LiveAnalysisError> {
        let (pipeline, failure) = state.withLock { ($0.pipeline, $0.failure) }
        if let failure { return .failure(LiveAnalysisError(message: failure)) }
        guard let pipeline else { return .failure(LiveAnalysisError(message: "the measured scan sent no lines")) }
        return .success(await pipeline.finishWithScan())
    }
}

public struct LiveAnalysisError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
