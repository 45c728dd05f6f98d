"""The command line as a file spark-submit runs (it takes a .py file, not ``-m``):

    spark-submit --master local[2] "$(python -c 'import pipeline.spark_submit as e; print(e.__file__)')" \\
        run --engine spark --input DIR --out OUT --warehouse WH.duckdb

The run joins the session spark-submit started (its --master and --conf; [spark] master is not used).
"""

from pipeline.cli import main

if __name__ == "__main__":
    main()
