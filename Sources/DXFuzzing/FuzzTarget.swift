import Foundation

/// The parsers that bytes from outside reach, each as one function over bytes: what libFuzzer
/// drives (`scripts/fuzz TARGET SECONDS`, the `dexa-fuzz` executable) and what the regular
/// suite replays (the committed seeds and every crash the fuzzer found, `Tests/Fuzz/`).
///
/// A target never crashes, hangs or allocates without bound whatever the bytes; everything it
/// refuses comes back as an error value. `Outcome` says which, so that the replay test can
/// hold a seed to still reaching the code past the parser.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// USB bytes: the frame decoder (split across reads at every size), then each frame's
    /// payload as the host reads it (responses and every typed result, events, data frames)
    /// and as the device reads it (commands, with the ICD's parameter check).
    case frames
    /// One frame's payload with no CRC in the way (the first byte picks command, response,
    /// event or data), or, with 4, the byte stream from a `dexa-sim` process (`SimLinkDecoder`).
    case payloads
    /// A `.dxcap` file: the header, the records, the scans read back through the frame
    /// decoder, and `dexa analyze` over it (calibration fit, decomposition, site analysis).
    case capture
    /// A control-socket line, as the daemon reads it (JSON-RPC, then every method's strict
    /// parameters) and as the client reads it (responses, every method's result, notices).
    case rpc
    /// The control socket's byte stream through the daemon's line framing (`LineDecoder` in a
    /// NIO channel), cut into reads of every size, each line then as `rpc`.
    case controlStream = "control-stream"
    /// The daemon's config file (`key = value` lines).
    case config
    /// An exam protocol file (JSON over the standard protocol).
    case examProtocol = "exam-protocol"
    /// A phantom file (ICD §8): decoded, then the calibration passes and ROI outlines made of it.
    case phantom
    /// An age-matched reference table (the Z-score's population, a site's file).
    case reference
    /// A stored calibration (`STATE/calibration.json`), as the daemon checks it before use.
    case calibration
    /// A stored decomposed scan (`.dxdec`), then the site analysis its region names.
    case decomposed
    /// A QC history file (`dexa qc history --json`), as `dexa qc cross-calibration --before
    /// --after` reads it: decoded, cross-calibrated, judged by the QC rules.
    case qcHistory = "qc-history"
    /// The simulator's phantom or patient JSON (`dexa-sim --phantom FILE`), then what the beam
    /// sees across the table from the front and the side.
    case scene
    /// A `.dxcap` file as `dexa capture show` summarises it.
    case captureSummary = "capture-summary"
    /// The station's DICOM settings (`/etc/dexa/dicom.conf`) as dexa and dexa-dicomd read them.
    case dicomConfig = "dicom-config"
    /// The site analyses (AP spine, hips, lateral spine) over an image built from the bytes:
    /// structure-aware, so that mutations change pixels, not a compressed stream.
    case analysis

    /// Runs the target over `bytes`.
    public func run(_ bytes: [UInt8]) -> FuzzOutcome {
        switch self {
        case .frames: WireTargets.frames(bytes)
        case .payloads: WireTargets.payloads(bytes)
        case .capture: CaptureTargets.capture(bytes)
        case .rpc: ControlTargets.rpc(bytes)
        case .controlStream: ControlTargets.stream(bytes)
        case .config: FileTargets.config(bytes)
        case .examProtocol: FileTargets.examProtocol(bytes)
        case .phantom: FileTargets.phantom(bytes)
        case .reference: FileTargets.reference(bytes)
        case .calibration: FileTargets.calibration(bytes)
        case .decomposed: AnalysisTargets.decomposed(bytes)
        case .analysis: AnalysisTargets.analysis(bytes)
        case .qcHistory: FileTargets.qcHistory(bytes)
        case .scene: FileTargets.scene(bytes)
        case .captureSummary: FileTargets.captureSummary(bytes)
        case .dicomConfig: FileTargets.dicomConfig(bytes)
        }
    }
}

/// What a target made of its bytes.
public enum FuzzOutcome: Sendable, Equatable, CustomStringConvertible {
    /// The parser accepted the bytes and the code behind it ran to its end (its own
    /// refusals, such as an analysis that finds no spine, included).
    case accepted(String)
    /// The parser refused them with an error (the clear message a user would get).
    case refused(String)

    public var accepted: Bool { if case .accepted = self { true } else { false } }

    public var description: String {
        switch self {
        case .accepted(let what): "accepted: \(what)"
        case .refused(let why): "refused: \(why)"
        }
    }
}
