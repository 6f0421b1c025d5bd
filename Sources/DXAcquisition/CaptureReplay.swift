import DXDecomposition
import DXProtocol
import DXTransport
import Foundation

/// A recorded acquisition played back through the live path: the capture's IN endpoints come
/// out of a `ReplayTransport`, through the same frame decoder as a device link, into the same
/// `LiveSequenceAnalysis` that `scan.run` uses. Its result must equal both the live result
/// of the day and `dexa analyze`.
public enum CaptureReplay {
    public static func analyse(path: String, calibration: Calibration, speed: Double = .infinity) async throws(AnalysisError) -> LiveResult {
        // Roles and configurations come from the header and the recorded CONFIGURE_SCAN
        // commands (the host's side of the link, which a replay does not send again), read
        // before the replay; then the file is played as it is read, never held whole.
        let file = try CaptureFile(path: path)
        let scans = try CaptureSource.file(file).survey(keep: []).scans
        guard let dark = scans.first(where: { $0.scan.role == .dark }) else { throw .missingScan(path, role: "dark") }
        guard let air = scans.first(where: { $0.scan.role == .air }) else { throw .missingScan(path, role: "air") }
        guard let measured = scans.last(where: { [.patient, .qc, .calibration].contains($0.scan.role) }) else {
            throw .missingScan(path, role: "patient, QC or phantom")
        }
        var order: [(CapturedScan, LiveSequenceAnalysis.Scan)] = []
        for s in [dark, air, measured] {
            guard let c = s.configuration else { throw .noConfiguration(path, scanID: s.scan.scanID) }
            order.append((s, .init(role: s.scan.role, configuration: c)))
        }
        let index = Dictionary(order.enumerated().map { ($1.0.scan.scanID, $0) }, uniquingKeysWith: { a, _ in a })
        let geometry = ScanGeometry(channels: Int(file.header.device.channels), pitchUm: Int(file.header.device.pitchUm))
        let analysis = LiveSequenceAnalysis(calibration: calibration, geometry: geometry, rois: file.header.phantom?.rois ?? [],
                                            scans: order.map(\.1), keepsImage: false)
        let transport: ReplayTransport
        do { transport = try ReplayTransport(path: path, speed: speed) } catch { throw .unreadable(path, "\(error)") }
        var decoder = FrameDecoder()
        do {
            for try await chunk in try await transport.open() where chunk.endpoint == .dataIn {
                decoder.append(chunk.bytes)
                while let frame = decoder.next() {
                    guard frame.kind == .data, let d = try? DataFrame(payload: frame.payload), let k = index[d.scanID] else { continue }
                    analysis.lines(d.lines, scan: k)
                }
            }
        } catch TransportError.disconnected {
            // The end of the recording.
        } catch {
            throw .unreadable(path, "\(error)")
        }
        switch await analysis.finish() {
        case .success(let result): return result
        case .failure(let e): throw .decomposition("\(path): \(e.description)")
        }
    }
}
