package com.tinybeauty.demo

import android.content.Context
import android.util.Log
import org.json.JSONArray
import org.json.JSONObject
import java.io.FileNotFoundException

/**
 * How the model's crops are framed: the `"alignment"` entry of the export's `model_card.json`
 * (`export/report.py`, from `makeup/align.py`): the template (units of the crop side), the face-mesh indices
 * of the eye and mouth corners, the paste-back feather and the pixel-centre offset. The web demo reads the
 * same entry, so both apps frame faces with one set of numbers.
 *
 * `make android-assets` copies the card beside the model. Without it (or with a card from an older export
 * that has no alignment entry) the app uses [BUILT_IN], the constants in [FaceAligner]'s companion, which
 * `tests/test_android_demo.py` keeps equal to `makeup/align.py`; [note] says so on screen.
 */
data class Alignment(
    val template: List<DoubleArray>,
    val rightEyeCorners: IntArray,
    val leftEyeCorners: IntArray,
    val mouthCorners: IntArray,
    val feather: Double,
    val pixelCentre: Double,
    /** Null when read from the model card; otherwise why the built-in constants are used. */
    val note: String? = null,
) {
    companion object {
        private const val TAG = "Alignment"

        /** Copied by `make android-assets` from the export folder (export.pipeline CARD). */
        const val MODEL_CARD_ASSET = "model_card.json"

        val BUILT_IN = Alignment(
            template = FaceAligner.TEMPLATE.toList(),
            rightEyeCorners = FaceAligner.RIGHT_EYE_CORNERS,
            leftEyeCorners = FaceAligner.LEFT_EYE_CORNERS,
            mouthCorners = FaceAligner.MOUTH_CORNERS,
            feather = FaceAligner.FEATHER,
            pixelCentre = FaceAligner.PIXEL_CENTRE,
        )

        /** The card's `"alignment"` entry; throws [org.json.JSONException] when it is missing or malformed. */
        fun fromModelCard(json: String): Alignment {
            val a = JSONObject(json).getJSONObject("alignment")
            val lm = a.getJSONObject("landmarks")
            val t = a.getJSONArray("template")
            require(t.length() == 3) { "alignment.template must have 3 points" }
            return Alignment(
                template = List(3) { i -> doubles(t.getJSONArray(i)).also { require(it.size == 2) } },
                rightEyeCorners = ints(lm.getJSONArray("right_eye_corners")),
                leftEyeCorners = ints(lm.getJSONArray("left_eye_corners")),
                mouthCorners = ints(lm.getJSONArray("mouth_corners")),
                feather = a.getDouble("feather"),
                pixelCentre = a.getDouble("pixel_centre"),
            )
        }

        /** From assets/model_card.json, or [BUILT_IN] with a note saying why. */
        fun load(context: Context): Alignment = try {
            val text = context.assets.open(MODEL_CARD_ASSET).bufferedReader().use { it.readText() }
            fromModelCard(text)
        } catch (e: FileNotFoundException) {
            BUILT_IN.copy(note = "$MODEL_CARD_ASSET is not in assets: built-in alignment (run `make android-assets`)")
        } catch (e: Exception) {
            Log.w(TAG, "model card without a usable alignment entry", e)
            BUILT_IN.copy(note = "$MODEL_CARD_ASSET has no usable \"alignment\": built-in alignment")
        }

        private fun doubles(a: JSONArray) = DoubleArray(a.length()) { a.getDouble(it) }
        private fun ints(a: JSONArray) = IntArray(a.length()) { a.getInt(it) }.also { require(it.size == 2) }
    }
}
