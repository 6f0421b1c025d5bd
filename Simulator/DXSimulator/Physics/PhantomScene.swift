import DXProtocol
import Foundation

/// A phantom on the table (ICD §8): where no cell lies the beam crosses air; over a cell it
/// crosses that cell's areal densities. Where cells overlap, the one listed last wins (it
/// describes an insert completely: docs/ICD-NOTES.md).
public struct PhantomScene: Scene {
    public let phantom: Phantom
    private let cells: [(x0: Int32, x1: Int32, y0: Int32, y1: Int32, c: Composition)]

    public init(_ phantom: Phantom) {
        self.phantom = phantom
        cells = (phantom.cells ?? []).compactMap { cell in
            guard cell.xUm.count == 2, cell.yUm.count == 2 else { return nil }
            return (min(cell.xUm[0], cell.xUm[1]), max(cell.xUm[0], cell.xUm[1]), min(cell.yUm[0], cell.yUm[1]), max(cell.yUm[0], cell.yUm[1]),
                    Composition(hydroxyapatite: max(0, cell.hydroxyapatite), lean: max(0, cell.lean), fat: max(0, cell.fat)))
        }
    }

    public func composition(xUm: Int32, yUm: Int32) -> Composition {
        for cell in cells.reversed() where xUm >= cell.x0 && xUm < cell.x1 && yUm >= cell.y0 && yUm < cell.y1 {
            return cell.c
        }
        return .air
    }
}

/// The phantoms that ship with the system (the same JSON the host reads).
public enum StandardPhantoms {
    /// The calibration phantom: 75 cells spanning hydroxyapatite 0–2.0, lean 5–25, fat 0–6
    /// g/cm² (ICD §8), 8 × 10 mm each, centred on the table at y 300–350 mm.
    public static var calibration: Phantom {
        var cells: [Phantom.Cell] = []
        let has = [0.0, 0.5, 1.0, 1.5, 2.0], leans = [5.0, 10.0, 15.0, 20.0, 25.0], fats = [0.0, 3.0, 6.0]
        for (r, lean) in leans.enumerated() {
            var col = 0
            for fat in fats {
                for ha in has {
                    let x0 = Int32(140_000 + col * 8_000), y0 = Int32(300_000 + r * 10_000)
                    cells.append(Phantom.Cell(xUm: [x0, x0 + 8_000], yUm: [y0, y0 + 10_000], hydroxyapatite: ha, lean: lean, fat: fat))
                    col += 1
                }
            }
        }
        return Phantom(name: "DX-1 calibration phantom", cells: cells, rois: nil)
    }

    /// The service bench: the calibration phantom and the ESP-like phantom on the table at
    /// once (they lie at different y), so a test can calibrate and measure without anyone
    /// changing phantoms.
    public static var bench: Phantom {
        Phantom(name: "service bench", cells: (calibration.cells ?? []) + (esp.cells ?? []), rois: esp.rois)
    }

    /// An ESP-like spine phantom: three vertebral bodies of 0.5, 1.0 and 1.5 g/cm²
    /// hydroxyapatite in a block of soft tissue (lean 15, fat 3 g/cm²), with an ROI in each.
    public static var esp: Phantom {
        let tissue = (lean: 15.0, fat: 3.0)
        var cells = [Phantom.Cell(xUm: [140_000, 260_000], yUm: [500_000, 700_000], hydroxyapatite: 0, lean: tissue.lean, fat: tissue.fat)]
        var rois: [Phantom.ROI] = []
        for (i, ha) in [0.5, 1.0, 1.5].enumerated() {
            let y0 = Int32(520_000 + i * 60_000)
            cells.append(Phantom.Cell(xUm: [185_000, 215_000], yUm: [y0, y0 + 40_000], hydroxyapatite: ha, lean: tissue.lean, fat: tissue.fat))
            rois.append(Phantom.ROI(name: "L\(i + 1)", xUm: [190_000, 210_000], yUm: [y0 + 5_000, y0 + 35_000]))
        }
        return Phantom(name: "ESP-like spine phantom", cells: cells, rois: rois)
    }
}

extension StandardPhantoms {
    /// A scene by name (`empty`, `calibration`, `esp`, `bench`, `patient`) or from a JSON
    /// file: an ICD §8 phantom, or `{"patient": {...}}` with any of `PatientSpec`'s fields (the
    /// rest keep their defaults).
    public static func scene(named spec: String) throws -> any Scene {
        switch spec.lowercased() {
        case "", "empty", "air": return EmptyTable()
        case "calibration": return PhantomScene(calibration)
        case "esp": return PhantomScene(esp)
        case "bench": return PhantomScene(bench)
        case "patient": return PatientScene()
        default:
            guard let data = FileManager.default.contents(atPath: spec) else {
                throw PhantomError(message: "no phantom named \(spec) (empty, calibration, esp, bench, patient or a JSON file)")
            }
            return try scene(json: data, name: spec)
        }
    }

    /// A scene from a JSON file's bytes: `{"patient": {...}}` (fields laid over the default
    /// patient) or an ICD §8 phantom.
    public static func scene(json data: Data, name: String) throws -> any Scene {
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let patient = object["patient"] {
            do { return PatientScene(try PatientSpec.overriding(with: patient)) } catch {
                throw PhantomError(message: "\(name): the patient is not valid: \(error)")
            }
        }
        do { return PhantomScene(try JSONDecoder().decode(Phantom.self, from: data)) } catch {
            throw PhantomError(message: "\(name) is not an ICD §8 phantom: \(error)")
        }
    }
}

public struct PhantomError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

extension PatientSpec {
    /// The default patient with the fields of a JSON object laid over it (`JSONOverlay`).
    public static func overriding(with json: Any) throws -> PatientSpec {
        try JSONOverlay.decode(PatientSpec.self, defaults: PatientSpec(), overlay: json)
    }
}
