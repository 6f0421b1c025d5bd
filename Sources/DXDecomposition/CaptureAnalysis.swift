import DXProtocol
import Foundation

/// One scan as a capture holds it: what it was for, how it was configured (from the
/// CONFIGURE_SCAN frame the host sent) and its lines (from the data frames).
public struct CapturedScan: Sendable {
    public var scan: CaptureScan
    public var configuration: ScanConfiguration?
    public var lines: [ScanLine]
}

/// Why a capture cannot be analysed: one line for the user, exit status 2 in `dexa analyze`.
public enum AnalysisError: Error, Equatable, Sendable, CustomStringConvertible {
    case unreadable(String, String)
    case missingScan(String, role: String)
    case noConfiguration(String, scanID: UInt32)
    case noPhantom(String, String)
    case decomposition(String)
    /// The calibration fails the acceptance rule (`CalibrationVerdict`); `--force` analyses anyway.
    case calibrationRefused(String, CalibrationVerdict)
    /// The calibration capture and the measured one come from different units; `--force`
    /// analyses anyway.
    case otherUnit(String)

    public var description: String {
        switch self {
        case let .unreadable(path, why): "\(path): \(why)"
        case let .missingScan(path, role): "\(path) holds no \(role) scan"
        case let .noConfiguration(path, id): "\(path): no CONFIGURE_SCAN for scan \(id) in the capture"
        case let .noPhantom(path, what): "\(path): the header's phantom has no \(what)"
        case .decomposition(let why): why
        case let .calibrationRefused(path, verdict): "\(path): \(verdict.description) (--force analyses anyway)"
        case .otherUnit(let why): "\(why) (--force analyses anyway)"
        }
    }
}

/// Reads captures (ICD §7) back into scans, through the same frame decoder as live data.
public enum CaptureReader {
    public static func scans(in contents: CaptureFormat.Contents) -> [CapturedScan] {
        var commands = FrameDecoder(), data = FrameDecoder()
        var configs: [UInt32: ScanConfiguration] = [:]
        var lines: [UInt32: [ScanLine]] = [:]
        for record in contents.records {
            switch record.endpoint {
            case .commandOut:
                commands.append(record.bytes)
                while let f = commands.next() {
                    if f.kind == .command, case .configureScan(let c)? = try? Command(payload: f.payload) { configs[c.scanID] = c }
                }
            case .dataIn:
                data.append(record.bytes)
                while let f = data.next() {
                    if f.kind == .data, let d = try? DataFrame(payload: f.payload) { lines[d.scanID, default: []] += d.lines }
                }
            case .responseIn:
                break
            }
        }
        return contents.header.scans.map { CapturedScan(scan: $0, configuration: configs[$0.scanID], lines: lines[$0.scanID] ?? []) }
    }

    /// A capture's header alone: its preamble is read, not its records (a batch sorts an
    /// archive by what each file is before reading any whole).
    public static func header(path: String) throws(AnalysisError) -> CaptureHeader {
        try CaptureFile(path: path).header
    }

    public static func read(path: String) throws(AnalysisError) -> (CaptureHeader, [CapturedScan]) {
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path, "cannot read the file") }
        let contents: CaptureFormat.Contents
        do { contents = try CaptureFormat.parse(Array(data)) } catch { throw .unreadable(path, error.description) }
        return (contents.header, scans(in: contents))
    }
}

/// `dexa analyze`: a calibration capture (dark, air, calibration-phantom scans) and a
/// capture to measure (dark, air and the scan), through the same stages as live data.
public struct CaptureAnalysis: Sendable {
    public var calibration: Calibration
    public var rois: [ROIResult]
    public var lines: Int
    public var motion: [MotionEvent]
    public var bonePixels: Int
    public var boneAreaCm2: Double
    public var meanBoneBMD: Double
    public var image: BoneImage?
    public var roiDefinitions: [Phantom.ROI]
    /// The lines the scan was configured for and which of them never arrived.
    public var ledger: LineLedger
    /// The calibration judged by the daemon's rule; `forced` when it failed and the analysis
    /// ran anyway (`--force`).
    public var verdict: CalibrationVerdict
    /// Why the calibration is not this unit's, when it is not (analysed only with `--force`).
    public var otherUnit: String?
    public var forced: Bool
    /// The measured scan decomposed, with its geometry: the same value an exam stores. Kept for
    /// a patient scan and when asked for (`run(decomposed:)`); nil otherwise, so that a long
    /// phantom capture is measured in bounded memory.
    public var decomposed: DecomposedScan?
    /// The measured capture's header (its patient, when a patient scan) and the scan's role.
    public var header: CaptureHeader
    public var role: CaptureScan.Role

    /// `image`: also keep the bone mineral image (for `dexa analyze --image`). `force`: analyse
    /// with a calibration the acceptance rule refuses (the result says so). `decomposed`: keep
    /// the decomposed scan (a patient scan's is always kept: its site analysis reads it). The
    /// measured capture is read as it goes (`CaptureFile`): what is held is the analysis's, not
    /// the capture's raw samples.
    public static func run(calibrationPath: String, scanPath: String, image: Bool = false,
                           force: Bool = false, decomposed: Bool = false) throws(AnalysisError) -> CaptureAnalysis {
        let calibration = try fit(try CaptureReader.read(path: calibrationPath), path: calibrationPath)
        // The scan is read only once the calibration stands (its errors come first).
        return try run(calibration: calibration, calibrationPath: calibrationPath, source: .file(try CaptureFile(path: scanPath)),
                       scanPath: scanPath, image: image, force: force, decomposed: decomposed)
    }

    /// The same over captures already read (the paths only name them in messages): what the
    /// fuzzer drives with bytes that never touched a disk.
    public static func run(calibration calibrationCapture: (CaptureHeader, [CapturedScan]), calibrationPath: String,
                           scan scanCapture: (CaptureHeader, [CapturedScan]), scanPath: String, image: Bool = false,
                           force: Bool = false) throws(AnalysisError) -> CaptureAnalysis {
        try run(calibration: try fit(calibrationCapture, path: calibrationPath), calibrationPath: calibrationPath,
                source: .scans(scanCapture.0, scanCapture.1), scanPath: scanPath, image: image, force: force, decomposed: true)
    }

    /// The measured capture against a calibration already fitted (`calibrationPath` names it).
    public static func run(calibration: Calibration, calibrationPath: String, scan scanCapture: (CaptureHeader, [CapturedScan]),
                           scanPath: String, image: Bool = false, force: Bool = false) throws(AnalysisError) -> CaptureAnalysis {
        try run(calibration: calibration, calibrationPath: calibrationPath, source: .scans(scanCapture.0, scanCapture.1), scanPath: scanPath,
                image: image, force: force, decomposed: true)
    }

    /// The measured capture from `source` against a calibration already fitted: the one path
    /// every form above takes.
    public static func run(calibration: Calibration, calibrationPath: String, source: CaptureSource, scanPath: String,
                           image: Bool = false, force: Bool = false, decomposed keepDecomposed: Bool = false) throws(AnalysisError) -> CaptureAnalysis {
        // First the references' lines and every scan's configuration, then the measured scan's
        // lines one by one: the references come first in the capture, but nothing rests on it.
        // The first pass reads the whole file, so a damaged capture is said before the
        // calibration is judged, as when the capture was read whole.
        let header = source.header
        let references = Set([CaptureScan.Role.dark, .air].compactMap { role in header.scans.first { $0.role == role }?.scanID })
        let (scans, lineCounts) = try source.survey(keep: references)
        let verdict = calibration.verdict
        guard verdict.accepted || force else { throw .calibrationRefused(calibrationPath, verdict) }

        let otherUnit = calibration.unitProblem(for: header.device).map { "\(scanPath) was measured on \(CalibratedUnit(header.device)): \($0)" }
        if let otherUnit, !force { throw .otherUnit(otherUnit) }
        guard calibration.channelResponse?.fits(channels: Int(header.device.channels)) ?? false else {
            throw .decomposition("\(scanPath): the calibration \(calibrationPath) was made on a detector of other channels")
        }
        let scanStage = try stage(scans, path: scanPath)
        guard let measured = scans.first(where: { [.patient, .qc, .calibration].contains($0.scan.role) }),
              lineCounts[measured.scan.scanID, default: 0] > 0 else {
            throw .missingScan(scanPath, role: "patient, QC or phantom")
        }
        guard let config = measured.configuration else { throw .noConfiguration(scanPath, scanID: measured.scan.scanID) }
        let scanGeometry = ScanGeometry(channels: Int(header.device.channels), pitchUm: Int(header.device.pitchUm))
        let keep = keepDecomposed || measured.scan.role == .patient
        var work = ScanDecomposition(stage: scanStage, calibration: calibration, geometry: scanGeometry,
                                     rois: header.phantom?.rois ?? [], configuration: config, keepsImage: keep)
        var picture = image ? BoneImage(geometry: scanGeometry, lineStepUm: config.lineStepUm) : nil
        var lines = 0
        try source.forEachLine(ofScan: measured.scan.scanID) { line throws(AnalysisError) in
            do throws(DecompositionError) {
                let d = try work.add(line)
                picture?.add(d)
                lines += 1
            } catch {
                throw .decomposition("\(scanPath): \(error.description)")
            }
        }
        var scan: DecomposedScan?
        if keep {
            var d = work.decomposed
            d.provenance.capture = scanPath
            d.provenance.scanID = measured.scan.scanID
            d.provenance.region = measured.scan.region?.rawValue
            // The capture does not record the arm; the region implies it (the lateral view at 90°).
            d.provenance.armAngleDeg = measured.scan.region.map { $0 == .lateralSpine ? 90 : 0 }
            scan = d
        }
        return CaptureAnalysis(calibration: calibration, rois: work.roiResults, lines: lines,
                               motion: work.motion, bonePixels: work.bonePixels, boneAreaCm2: work.boneAreaCm2, meanBoneBMD: work.meanBoneBMD,
                               image: picture, roiDefinitions: header.phantom?.rois ?? [], ledger: work.ledger,
                               verdict: verdict, otherUnit: otherUnit, forced: !verdict.accepted || otherUnit != nil, decomposed: scan,
                               header: header, role: measured.scan.role)
    }

    /// The calibration a calibration capture gives (its header's phantom, its scans).
    public static func fit(_ calibrationCapture: (CaptureHeader, [CapturedScan]), path calibrationPath: String) throws(AnalysisError) -> Calibration {
        let (calHeader, calScans) = calibrationCapture
        guard let phantom = calHeader.phantom, phantom.cells?.isEmpty == false else { throw .noPhantom(calibrationPath, "cells") }
        let geometry = ScanGeometry(channels: Int(calHeader.device.channels), pitchUm: Int(calHeader.device.pitchUm))
        return try Self.calibration(from: calScans, phantom: phantom, geometry: geometry, source: calibrationPath,
                                    unit: CalibratedUnit(calHeader.device))
    }

    /// The calibration from a capture's dark, air and calibration scans: the one code path
    /// for `service.calibrate` and `dexa analyze`.
    /// `unit`: the unit the capture's header names. `coverage`: `service.calibrate` refuses a
    /// calibration whose passes left channels unseen; a capture from the archive (made before
    /// 2026-12-06 with whole-width steps) is fitted with them inferred and listed
    /// (`Calibration.inferredChannels`).
    public static func calibration(from scans: [CapturedScan], phantom: Phantom, geometry: ScanGeometry,
                                   source: String, unit: CalibratedUnit,
                                   coverage: CalibrationMeasurement.Coverage = .inferGaps) throws(AnalysisError) -> Calibration {
        let stage = try stage(scans, path: source)
        // Every calibration scan counts: thin cells come from a short exposure, thick ones
        // from a long one (CalibrationMeasurement pools them by exposure).
        let calScans = scans.filter { $0.scan.role == .calibration && !$0.lines.isEmpty }
        guard !calScans.isEmpty else { throw .missingScan(source, role: "calibration") }
        // The detector's rate loss, from the air scans at two currents when the capture has them.
        let airs = scans.filter { $0.scan.role == .air }.compactMap { a in
            a.configuration.flatMap { CountRate.AirMeasurement(lines: a.lines, dark: stage.dark, periodUs: $0.linePeriodUs, currentUA: $0.tubeCurrentUA) }
        }
        do {
            var passes: [CalibrationFit.Pass] = []
            for scan in calScans {
                guard let config = scan.configuration else { throw AnalysisError.noConfiguration(source, scanID: scan.scan.scanID) }
                passes.append(.init(configuration: config, lines: scan.lines))
            }
            return try CalibrationFit.run(stage: stage, airs: airs, passes: passes, phantom: phantom, geometry: geometry, source: source, unit: unit,
                                          coverage: coverage)
        } catch let error as AnalysisError {
            throw error
        } catch {
            throw .decomposition("\(source): \(error)")
        }
    }

    public static func stage(_ scans: [CapturedScan], path: String) throws(AnalysisError) -> AttenuationStage {
        guard let darkScan = scans.first(where: { $0.scan.role == .dark }), !darkScan.lines.isEmpty else { throw .missingScan(path, role: "dark") }
        guard let airScan = scans.first(where: { $0.scan.role == .air }), !airScan.lines.isEmpty else { throw .missingScan(path, role: "air") }
        guard let airConfig = airScan.configuration else { throw .noConfiguration(path, scanID: airScan.scan.scanID) }
        do {
            return try AttenuationStage(darkLines: darkScan.lines, airLines: airScan.lines, airPeriodUs: airConfig.linePeriodUs,
                                        airCurrentUA: airConfig.tubeCurrentUA)
        } catch {
            throw .decomposition("\(path): \(error.description)")
        }
    }
}

/// `dexa analyze --json`: one capture's analysis as a typed document (docs/console.md).
public struct AnalysisReport: Sendable, Equatable, Codable {
    public var rois: [ROIResult]
    public var motion: [MotionEvent]
    public var lines: Int
    public var plannedLines: Int
    public var missingLines: Int
    /// Inclusive ranges of line indices that never arrived.
    public var missingLineRanges: [[Int]]
    /// No line missing and every ROI complete.
    public var complete: Bool
    public var calibrationResidualGCm2: Double
    public var calibration: CalibrationVerdict
    /// Analysed with a calibration the acceptance rule refuses or from another unit (`--force`).
    public var forced: Bool
    /// Why the calibration is not the measured unit's (absent when it is).
    public var calibrationOtherUnit: String?
    /// Channels whose response the calibration inferred from their neighbours (absent: every
    /// channel measured; many: a calibration capture from before 2026-12-06).
    public var calibrationInferredChannels: [Int]?
    /// The share of the low window's air counts the calibration found to be high-energy
    /// photons and took out of every pixel (`LowWindowMixing`; absent: none found).
    public var calibrationLowWindowMixing: Double?
    /// Each channel's map onto the detector's mean the calibration fitted (`Calibration.channelMap`):
    /// a calibration capture fitted again with a newer `dexa` may fit a richer one than it had.
    public var calibrationChannelMap: String
    /// Absent when no pixel was bone.
    public var boneAreaCm2: Double?
    public var meanBoneBMDGCm2: Double?

    public enum CodingKeys: String, CodingKey {
        case rois, motion, lines, complete, calibration, forced
        case plannedLines = "planned_lines", missingLines = "missing_lines", missingLineRanges = "missing_line_ranges"
        case calibrationOtherUnit = "calibration_other_unit", calibrationInferredChannels = "calibration_inferred_channels"
        case calibrationLowWindowMixing = "calibration_low_window_mixing", calibrationChannelMap = "calibration_channel_map"
        case calibrationResidualGCm2 = "calibration_residual_g_cm2", boneAreaCm2 = "bone_area_cm2", meanBoneBMDGCm2 = "mean_bone_bmd_g_cm2"
    }

    public init(_ a: CaptureAnalysis) {
        rois = a.rois; motion = a.motion; lines = a.lines; plannedLines = a.ledger.expected; missingLines = a.ledger.missingCount
        missingLineRanges = a.ledger.missingRanges.map { [$0.lowerBound, $0.upperBound] }
        complete = a.ledger.missingCount == 0 && a.rois.allSatisfy(\.complete)
        calibrationResidualGCm2 = a.verdict.residual; calibration = a.verdict; forced = a.forced
        calibrationOtherUnit = a.otherUnit
        calibrationInferredChannels = a.calibration.inferredChannels
        calibrationLowWindowMixing = a.calibration.lowWindowMixing
        calibrationChannelMap = a.calibration.channelMap
        boneAreaCm2 = a.bonePixels > 0 ? a.boneAreaCm2 : nil
        meanBoneBMDGCm2 = a.bonePixels > 0 ? a.meanBoneBMD : nil
    }
}
